"""The CAM-style WSOL classifier: a backbone trunk, global average pooling, one linear layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcam.models.encoder import WSOLEncoder


class WSOLClassifier(nn.Module):
    """Classifier whose class scores are linear in the pooled top map, so CAM = fc weights x map.

    ``forward_features`` returns the trunk's features and the logits of one pass:
    the decoder reads the features, CAM methods read the top map (``features[-1]``).
    In train mode the top map is dropped out (``encoder.head_dropout``) on its way to
    the pooling only, so the returned top map is the CAM target layer's output.
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

    @property
    def summary(self) -> str:
        """One line naming the backbone and the features the decoder reads (name@stride)."""
        enc = self.encoder
        maps = [f"{n}@{s} ({c} ch)" for n, s, c in zip(enc.feature_names, enc.strides, enc.out_channels)]
        return f"backbone {self.backbone}: decoder skips {', '.join(maps[:-1]) or 'none'}; top map {maps[-1]}"

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features (high to low resolution, top map last) and logits (B, K)."""
        features = self.encoder(x)
        top = features[-1]
        if self.training and self.encoder.head_dropout > 0:
            # Element-wise on the map, then pooled: wsolevaluation drops out the map before
            # its 1x1 class-map conv, which commutes with the pooling.
            top = F.dropout(top, self.encoder.head_dropout, training=True)
        return features, self.head(top)

    def head(self, top: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of a top map (B, C, h, w): global average pooling, then ``fc``.

        The part of the network past the CAM target layer: gradient CAMs differentiate it
        alone, from the top map of a forward already run.
        """
        return self.fc(top.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Trainable parameters split into (base learning rate, x ``new_layers_lr_mult``).

        The second group is fc plus the trunk's ``lr_mult_layers``, following the name
        patterns of wsolevaluation's ``main.py`` (Choe et al.); frozen parameters are in
        neither.
        """
        base: list[nn.Parameter] = []
        mult: list[nn.Parameter] = []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            module, _, rest = name.partition(".")
            in_mult = module == "fc" or self.encoder.is_lr_mult_parameter(rest)
            (mult if in_mult else base).append(param)
        return base, mult
