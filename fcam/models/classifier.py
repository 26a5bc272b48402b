"""The CAM-style WSOL classifier: a backbone trunk, global average pooling, one linear layer."""

from __future__ import annotations

import torch
from torch import nn

from fcam.models.encoder import WSOLEncoder


class WSOLClassifier(nn.Module):
    """Classifier whose class scores are linear in the pooled top map, so CAM = fc weights x map.

    ``forward_features`` returns the trunk's features and the logits of one pass:
    the decoder reads the features, CAM methods read the top map (``features[-1]``).
    """

    def __init__(self, backbone: str, encoder: WSOLEncoder, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.encoder = encoder
        self.fc = nn.Linear(encoder.out_channels[-1], num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        """Channels of the maps ``forward_features`` returns, in the same order."""
        return self.encoder.out_channels

    @property
    def cam_target_layer(self) -> nn.Module:
        """The module whose output is the top map (for hook-based gradient CAMs)."""
        return self.encoder.cam_target_layer

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features (high to low resolution, top map last) and logits (B, K)."""
        features = self.encoder(x)
        logits = self.fc(features[-1].mean(dim=(2, 3)))
        return features, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Trainable parameters split into (pretrained trunk, new layers + fc).

        The second group gets the x10 learning rate of Choe et al.; frozen
        parameters are in neither.
        """
        pretrained: list[nn.Parameter] = []
        new: list[nn.Parameter] = []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            module, _, rest = name.partition(".")
            is_new = module == "fc" or self.encoder.is_new_parameter(rest)
            (new if is_new else pretrained).append(param)
        return pretrained, new
