"""WSOL VGG16 trunk (Choe et al.): conv1_1..conv5_3 with three max-pools, then conv6."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from fcam.models.encoder import WSOLEncoder, init_convs


class VGG16Encoder(WSOLEncoder):
    """VGG16 trunk with a 1024-channel top map at stride 8 (28x28 at 224).

    The 4th and 5th max-pools of torchvision's VGG16 become identities instead of
    being removed, so ``features.<i>`` keeps torchvision's indices and its ImageNet
    state dict loads without renaming. conv6 (3x3, 512->1024) + ReLU is new.
    Features: conv2_2 (stride 2, 128 ch), conv3_3 (stride 4, 256 ch), conv6 (top).
    """

    new_layers = ("conv6",)
    # wsolevaluation's main.py: everything outside features.* (conv6, fc) gets the x10 rate.
    lr_mult_layers = ("conv6",)
    imagenet_dropped = ("classifier.",)
    strides = (2, 4, 8)
    feature_names = ("conv2_2", "conv3_3", "conv6")
    # F-CAM's code: three blocks on the three stages, plus a center block on the top map.
    decoder_channels = (256, 128, 64)
    decoder_center = True
    # Indices in ``features`` of the ReLUs after conv2_2 and conv3_3: the skips.
    _SKIP_TAPS = (8, 15)
    _KEPT_POOLS = 3

    def __init__(self) -> None:
        super().__init__()
        layers = list(make_layers(cfgs["D"]))
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        for i in pools[self._KEPT_POOLS:]:
            layers[i] = nn.Identity()
        self.features = nn.Sequential(*layers)
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
        self.relu6 = nn.ReLU()
        init_convs(self, "he")
        self.out_channels = (128, 256, 1024)

    @property
    def cam_target_layer(self) -> nn.Module:
        return self.relu6

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._SKIP_TAPS:
                features.append(x)
        features.append(self.relu6(self.conv6(x)))
        return features
