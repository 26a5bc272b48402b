"""U-Net decoder (segmentation_models_pytorch style) that turns encoder features into F-CAM logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Upsample x2 (nearest), match the skip's size, concatenate it, two conv-BN-ReLU.

    The WSOL trunks keep several stages at stride 8, so the doubled map can be
    larger than its skip; it is then resized to the skip (bilinear, as F-CAM's code).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """Decoder over encoder features (high to low resolution, top map last) -> (B, 2, H, W) logits.

    Block i reads the previous output and the i-th skip counted from the top; blocks
    past the last skip only upsample. ``center`` adds two 3x3 conv-BN-ReLU on the
    top map first (used for VGG16). The head is a 3x3 conv to ``out_channels``
    logits, resized (bilinear) to the requested output size when it differs.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        center: bool = False,
        out_channels: int = 2,
    ) -> None:
        super().__init__()
        skip_channels = list(encoder_channels[-2::-1])
        if len(skip_channels) > len(decoder_channels):
            raise ValueError(
                f"{len(skip_channels)} skips need at least as many decoder blocks, "
                f"got decoder_channels={tuple(decoder_channels)}"
            )
        skip_channels += [0] * (len(decoder_channels) - len(skip_channels))
        top = encoder_channels[-1]
        self.center: nn.Module = nn.Identity()
        if center:
            self.center = nn.Sequential(_conv_bn_relu(top, top), _conv_bn_relu(top, top))
        in_channels = [top, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(in_channels, skip_channels, decoder_channels)
        )
        self.head = nn.Conv2d(decoder_channels[-1], out_channels, kernel_size=3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        # segmentation_models_pytorch's initialization of decoder and head.
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.head:
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: Sequence[torch.Tensor], output_size: Sequence[int]) -> torch.Tensor:
        skips = list(features[-2::-1])
        x = self.center(features[-1])
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        logits = self.head(x)
        if tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)
        return logits
