"""WSOL ResNet trunks (Choe et al.): torchvision ResNets with layer3 and layer4 at stride 1."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from fcam.models.encoder import WSOLEncoder

_TORCHVISION_RESNETS = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}


def _drop_stride(block: nn.Module) -> None:
    """Turn the first block of a stage into a stride-1 block.

    The stride sits on the block's 3x3 conv (conv2 of a Bottleneck, conv1 of a
    BasicBlock) and on its downsample 1x1 conv; kernel shapes do not change, so
    ImageNet weights still load.
    """
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride = (1, 1)


class ResNetEncoder(WSOLEncoder):
    """ResNet18/50 trunk whose top map (layer4) has stride 8: 28x28 at 224.

    Features: stem (after ReLU, before the max-pool, stride 2), layer1 (stride 4),
    layer2, layer3 and layer4 (stride 8). Module names are torchvision's, so its
    ImageNet state dicts load as they are.
    """

    imagenet_dropped = ("fc.",)
    # wsolevaluation's main.py: parameters named layer4.* (and fc.*) get the x10 rate.
    lr_mult_layers = ("layer4",)
    strides = (2, 4, 8, 8, 8)
    feature_names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in _TORCHVISION_RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(_TORCHVISION_RESNETS)}, got {depth}")
        net = _TORCHVISION_RESNETS[depth](weights=None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        _drop_stride(self.layer3[0])
        _drop_stride(self.layer4[0])
        expansion = type(self.layer1[0]).expansion
        self.out_channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)

    @property
    def cam_target_layer(self) -> nn.Module:
        return self.layer4[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]
