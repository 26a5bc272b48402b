"""WSOL InceptionV3 trunk: the SPG-style variant of wsolevaluation (Choe et al.; Zhang et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionC

from fcam.models.encoder import WSOLEncoder, init_convs


class ReductionAtStride1(nn.Module):
    """Mixed_6a (torchvision's InceptionB) with stride 1 and padding 1 everywhere.

    The grid-reduction block keeps the map size here, so the top map stays at
    stride 8. Submodule names match torchvision's, so ImageNet weights load.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU())


class InceptionV3Encoder(WSOLEncoder):
    """InceptionV3 up to Mixed_6e at stride 8, then two new 3x3 convs to 1024 channels.

    Geometry at 224 (wsolevaluation's, with its large feature map): Conv2d_1a
    (stride 2, padding 1) 112, Conv2d_2a/2b 110, max-pool (3, 2, padding 1, ceil)
    56, Conv2d_3b 56, Conv2d_4a 54, max-pool 28, Mixed_5b..Mixed_6e 28 (Mixed_6a at
    stride 1), SPG_A3_1b/SPG_A3_2b 1024 @ 28.
    Features: Conv2d_2b (64 ch), Conv2d_3b (80), Mixed_5d (288), Mixed_6e (768),
    SPG_A3_2b (top, 1024). In train mode the SPG blocks' inputs are dropped out as in
    wsolevaluation; the returned maps themselves never are.
    """

    new_layers = ("SPG_A3_1b", "SPG_A3_2b")
    # wsolevaluation's main.py: everything outside the Mixed_* and Conv2d_1..4 layers
    # (the SPG blocks, fc) gets the x10 rate.
    lr_mult_layers = new_layers
    imagenet_dropped = ("fc.", "AuxLogits.", "Mixed_7")
    strides = (2, 4, 8, 8, 8)
    feature_names = ("Conv2d_2b_3x3", "Conv2d_3b_1x1", "Mixed_5d", "Mixed_6e", "SPG_A3_2b")
    # wsolevaluation's InceptionCam drops out (p=0.5, train mode only) the inputs of
    # SPG_A3_1b and SPG_A3_2b and the top map before its class-map conv and pooling;
    # the last one is the classifier's ``head_dropout``.
    dropout = 0.5
    head_dropout = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2, padding=1)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = ReductionAtStride1(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.SPG_A3_1b = _conv_relu(768, 1024)
        self.SPG_A3_2b = _conv_relu(1024, 1024)
        init_convs(self, "xavier")
        self.out_channels = (64, 80, 288, 768, 1024)

    @property
    def cam_target_layer(self) -> nn.Module:
        return self.SPG_A3_2b

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        f2 = self.Conv2d_3b_1x1(self.maxpool1(f1))
        x = self.maxpool2(self.Conv2d_4a_3x3(f2))
        f3 = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(f3)
        f4 = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.SPG_A3_1b(F.dropout(f4, self.dropout, self.training))
        top = self.SPG_A3_2b(F.dropout(x, self.dropout, self.training))
        return [f1, f2, f3, f4, top]
