"""The contract every WSOL backbone trunk fulfils, and the weight initializations they share."""

from __future__ import annotations

import torch
from torch import nn


class WSOLEncoder(nn.Module):
    """Backbone trunk of a WSOL classifier: image -> features at several scales.

    ``forward(x)`` returns a list of feature maps ordered from high to low
    resolution; the last one is the top map (stride 8, 28x28 at 224) that the CAM
    head pools and the CAM methods read. Subclasses set:

    - ``out_channels``: channels of each returned map, aligned with that list;
    - ``new_layers``: names of child modules that ImageNet checkpoints do not hold
      (trained from scratch, with the larger learning rate);
    - ``imagenet_dropped``: key prefixes of the torchvision ImageNet checkpoint that
      the trunk does not use (its classifier, the layers past the top map);
    - ``cam_target_layer``: the module whose output is the top map.
    """

    out_channels: tuple[int, ...]
    new_layers: tuple[str, ...] = ()
    imagenet_dropped: tuple[str, ...] = ()

    @property
    def cam_target_layer(self) -> nn.Module:
        raise NotImplementedError

    def is_new_parameter(self, name: str) -> bool:
        """Whether the parameter or buffer ``name`` (relative to the trunk) is in a new layer."""
        return name.split(".", 1)[0] in self.new_layers

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
