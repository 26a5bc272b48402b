"""The contract every WSOL backbone trunk fulfils, and the weight initializations they share."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class WSOLEncoder(nn.Module):
    """Backbone trunk of a WSOL classifier: image -> features at several scales.

    ``forward(x)`` returns a list of feature maps ordered from high to low
    resolution; the last one is the top map that the CAM head pools and the CAM
    methods read (stride 8, 28x28 at 224, for the WSOL trunks). Subclasses set:

    - ``out_channels``, ``strides``, ``feature_names``: channels, stride and name of
      each returned map, aligned with that list;
    - ``new_layers``: names of child modules that ImageNet checkpoints do not hold
      (trained from scratch);
    - ``lr_mult_layers``: names of child modules trained, with the classifier's fc,
      at ``train.new_layers_lr_mult`` times the learning rate. A separate notion from
      ``new_layers``: wsolevaluation's ``main.py`` also gives ResNet's pretrained
      layer4 the larger rate;
    - ``head_dropout``: dropout probability on the top map before the head's pooling
      (train mode only);
    - ``imagenet_dropped``: key prefixes of the torchvision ImageNet checkpoint that
      the trunk does not use (its classifier, the layers past the top map);
    - ``decoder_channels``, ``decoder_center``: the shape of the U-Net decoder that
      fits these features (``fcam.models.decoder.UNetDecoder``);
    - ``cam_target_layer``: the module whose output is the top map.
    """

    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    feature_names: tuple[str, ...]
    new_layers: tuple[str, ...] = ()
    lr_mult_layers: tuple[str, ...] = ()
    head_dropout: float = 0.0
    imagenet_dropped: tuple[str, ...] = ()
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    decoder_center: bool = False

    @property
    def cam_target_layer(self) -> nn.Module:
        raise NotImplementedError

    def is_new_parameter(self, name: str) -> bool:
        """Whether the parameter or buffer ``name`` (relative to the trunk) is in a new layer."""
        return name.split(".", 1)[0] in self.new_layers

    def is_lr_mult_parameter(self, name: str) -> bool:
        """Whether the parameter ``name`` (relative to the trunk) gets the larger learning rate."""
        return name.split(".", 1)[0] in self.lr_mult_layers

    def trunk_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The entries of a torchvision-format state dict of the whole network that the
        trunk holds, keyed by the trunk's own parameter names."""
        return {k: v for k, v in state.items() if not k.startswith(self.imagenet_dropped)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


def init_convs(module: nn.Module, mode: str) -> None:
    """Initialize every conv under ``module`` the way wsolevaluation does for its backbones.

    ``mode`` is ``"he"`` (Kaiming normal, fan-out; VGG) or ``"xavier"`` (Xavier
    uniform; InceptionV3). Biases are zeroed, BatchNorm set to identity.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if mode == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif mode == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                raise ValueError(f"unknown init mode {mode!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
