"""The supported backbones and the factories that build classifiers and F-CAM models from them."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchvision.models import (
    Inception_V3_Weights,
    ResNet18_Weights,
    ResNet50_Weights,
    VGG16_Weights,
    WeightsEnum,
)

from fcam.errors import FcamError
from fcam.models.classifier import WSOLClassifier
from fcam.models.decoder import UNetDecoder
from fcam.models.encoder import WSOLEncoder
from fcam.models.fcam_model import FCAMModel
from fcam.models.inception import InceptionV3Encoder
from fcam.models.resnet import ResNetEncoder
from fcam.models.vgg import VGG16Encoder
from fcam.models.weights import download_imagenet, load_backbone_state, load_weights_file


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone's trunk, where its ImageNet weights are, and its decoder's shape."""

    build_encoder: Callable[[], WSOLEncoder]
    imagenet_weights: WeightsEnum
    decoder_channels: tuple[int, ...]
    decoder_center: bool


# Decoder shapes follow F-CAM's code: five blocks, except VGG16 (three blocks on its
# three stages, plus a center block on the 1024-channel top map).
BACKBONE_SPECS: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        functools.partial(ResNetEncoder, 50), ResNet50_Weights.IMAGENET1K_V1, (256, 128, 64, 32, 16), False
    ),
    "vgg16": BackboneSpec(VGG16Encoder, VGG16_Weights.IMAGENET1K_V1, (256, 128, 64), True),
    "inceptionv3": BackboneSpec(
        InceptionV3Encoder, Inception_V3_Weights.IMAGENET1K_V1, (256, 128, 64, 32, 16), False
    ),
    "resnet18": BackboneSpec(
        functools.partial(ResNetEncoder, 18), ResNet18_Weights.IMAGENET1K_V1, (256, 128, 64, 32, 16), False
    ),
}
BACKBONES: tuple[str, ...] = tuple(BACKBONE_SPECS)


def backbone_spec(backbone: str) -> BackboneSpec:
    """The spec of ``backbone``, FcamError naming the supported ones if unknown."""
    if backbone not in BACKBONE_SPECS:
        raise FcamError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
    return BACKBONE_SPECS[backbone]


def build_classifier(
    backbone: str, num_classes: int, pretrained: str | os.PathLike = "none"
) -> WSOLClassifier:
    """A WSOL classifier for ``num_classes`` classes.

    ``pretrained``: ``"none"`` (random init), ``"imagenet"`` (torchvision's ImageNet
    weights for the trunk, from the torch hub cache or downloaded), or the path of
    a state dict: torchvision-format ImageNet weights or a full classifier's.
    """
    spec = backbone_spec(backbone)
    if num_classes < 1:
        raise FcamError(f"num_classes must be at least 1, got {num_classes}")
    classifier = WSOLClassifier(backbone, spec.build_encoder(), num_classes)
    if pretrained == "imagenet":
        weights = spec.imagenet_weights
        load_backbone_state(classifier, download_imagenet(weights), weights.url)
    elif pretrained != "none":
        load_weights_file(classifier, Path(pretrained))
    return classifier


def build_decoder(classifier: WSOLClassifier) -> UNetDecoder:
    """The U-Net decoder that fits ``classifier``'s features."""
    spec = backbone_spec(classifier.backbone)
    return UNetDecoder(classifier.encoder_channels, spec.decoder_channels, center=spec.decoder_center)


def build_fcam(classifier: WSOLClassifier) -> FCAMModel:
    """F-CAM on ``classifier``, which is frozen in place (no gradients, eval mode)."""
    return FCAMModel(classifier, build_decoder(classifier))
