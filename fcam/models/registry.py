"""The backbones by name: one plain dict, the single source of the config's choices, the
README's backbone table and the error messages.

This module imports neither torch nor torchvision (the config is validated before any model
is built): each spec names its trunk's builder, a function that imports the trunk's module
when called, and its ImageNet weights as the name of a torchvision weights enum member.
Besides these names, ``torchvision/<name>`` takes any torchvision classification model as
the trunk (:mod:`fcam.models.torchvision_encoder`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fcam.errors import FcamError

if TYPE_CHECKING:
    from fcam.models.encoder import WSOLEncoder


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one WSOL trunk and where its ImageNet weights are.

    ``build_encoder`` imports the trunk's module when called; ``imagenet_weights`` names a
    member of a torchvision weights enum (``"ResNet50_Weights.IMAGENET1K_V1"``);
    ``top_channels`` and ``top_stride`` describe the top map (tests check them against the
    built trunk); ``summary`` is the trunk's line in the README's table.
    """

    build_encoder: Callable[[], WSOLEncoder]
    imagenet_weights: str
    top_channels: int
    top_stride: int
    summary: str


def _resnet(depth: int) -> WSOLEncoder:
    from fcam.models.resnet import ResNetEncoder

    return ResNetEncoder(depth)


def _vgg16() -> WSOLEncoder:
    from fcam.models.vgg import VGG16Encoder

    return VGG16Encoder()


def _inceptionv3() -> WSOLEncoder:
    from fcam.models.inception import InceptionV3Encoder

    return InceptionV3Encoder()


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        lambda: _resnet(50), "ResNet50_Weights.IMAGENET1K_V1", 2048, 8,
        "ResNet50 with layer3 and layer4 at stride 1 (Choe et al.); x10 lr on layer4 and fc",
    ),
    "vgg16": BackboneSpec(
        _vgg16, "VGG16_Weights.IMAGENET1K_V1", 1024, 8,
        "VGG16 through conv5_3 with three max-pools, then conv6 512->1024 (Choe et al.); x10 lr on conv6 and fc",
    ),
    "inceptionv3": BackboneSpec(
        _inceptionv3, "Inception_V3_Weights.IMAGENET1K_V1", 1024, 8,
        "InceptionV3 to Mixed_6e at stride 8, then SPG_A3 convs 768->1024 with dropout 0.5 (Choe et al.); "
        "x10 lr on SPG_A3_1b, SPG_A3_2b and fc",
    ),
    "resnet18": BackboneSpec(
        lambda: _resnet(18), "ResNet18_Weights.IMAGENET1K_V1", 512, 8,
        "ResNet18 with layer3 and layer4 at stride 1 (as resnet50); x10 lr on layer4 and fc",
    ),
}

TORCHVISION_PREFIX = "torchvision/"
TORCHVISION_SUMMARY = (
    "any classification model of torchvision.models.list_models(module=torchvision.models), cut at its "
    "last feature map before global pooling; x10 lr on fc (the new head)"
)
TORCHVISION_WEIGHTS = "get_model_weights(name).DEFAULT"
# Top-map strides a backbone can be asked for: 0 keeps its own; 8 and 16 dilate the last
# stages of the torchvision ResNet family (its replace_stride_with_dilation).
OUTPUT_STRIDES = (0, 8, 16)


def _expected(backbone: str) -> str:
    hint = "" if "/" in backbone else f" (torchvision's model of that name is {TORCHVISION_PREFIX}{backbone})"
    return f"one of {', '.join(BACKBONES)} or {TORCHVISION_PREFIX}<name>{hint}"


def backbone_problem(backbone: str) -> str | None:
    """Why ``backbone`` is not a backbone name (for the config's error), or None.

    ``torchvision/<name>`` passes here whatever the name: whether torchvision has that
    model is checked when it is built (importing torchvision here would cost seconds).
    """
    if backbone in BACKBONES:
        return None
    if backbone.startswith(TORCHVISION_PREFIX) and len(backbone) > len(TORCHVISION_PREFIX):
        return None
    return f"must be {_expected(backbone)}; got {backbone!r}"


def output_stride_problem(output_stride: int) -> str | None:
    """Why ``output_stride`` is not one of :data:`OUTPUT_STRIDES` (for the config's error), or None."""
    if output_stride in OUTPUT_STRIDES:
        return None
    return f"must be one of {', '.join(map(str, OUTPUT_STRIDES))}; got {output_stride!r}"


def backbone_spec(backbone: str) -> BackboneSpec:
    """The spec of a WSOL backbone; FcamError naming the supported ones if unknown."""
    if backbone not in BACKBONES:
        raise FcamError(f"unknown backbone {backbone!r}; expected {_expected(backbone)}")
    return BACKBONES[backbone]


def markdown_table() -> str:
    """The README's backbone table, generated from :data:`BACKBONES`."""
    lines = ["| `model.backbone` | trunk | top map | ImageNet weights (torchvision) |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {spec.summary} | {spec.top_channels} ch, stride {spec.top_stride} | "
              f"`{spec.imagenet_weights}` |" for name, spec in BACKBONES.items()]
    lines.append(f"| `{TORCHVISION_PREFIX}<name>` | {TORCHVISION_SUMMARY} | the model's own (stride 32 for most; "
                 f"`model.output_stride`) | `{TORCHVISION_WEIGHTS}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
