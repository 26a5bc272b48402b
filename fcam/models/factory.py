"""The factories that build classifiers, decoders and F-CAM models from a backbone name."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.models import WeightsEnum, get_model_weights, get_weight

from fcam.errors import FcamError
from fcam.models.classifier import WSOLClassifier
from fcam.models.decoder import UNetDecoder
from fcam.models.encoder import WSOLEncoder
from fcam.models.fcam_model import FCAMModel
from fcam.models.registry import TORCHVISION_PREFIX, backbone_spec
from fcam.models.torchvision_encoder import TorchvisionEncoder
from fcam.models.weights import download_imagenet, load_backbone_state, load_weights_file


def _build_encoder(backbone: str, output_stride: int) -> WSOLEncoder:
    if backbone.startswith(TORCHVISION_PREFIX):
        return TorchvisionEncoder(backbone[len(TORCHVISION_PREFIX):], output_stride)
    spec = backbone_spec(backbone)
    if output_stride not in (0, spec.top_stride):
        raise FcamError(f"backbone {backbone} has output stride {spec.top_stride}, got output stride "
                        f"{output_stride} (model.output_stride); use 0, or a {TORCHVISION_PREFIX}<name> backbone")
    return spec.build_encoder()


def imagenet_weights(backbone: str) -> WeightsEnum:
    """The torchvision ImageNet weights of ``backbone``: the protocol's IMAGENET1K_V1 for the
    WSOL backbones, torchvision's DEFAULT (its best) for ``torchvision/<name>``."""
    if backbone.startswith(TORCHVISION_PREFIX):
        return get_model_weights(backbone[len(TORCHVISION_PREFIX):]).DEFAULT
    return get_weight(backbone_spec(backbone).imagenet_weights)


def build_classifier(
    backbone: str, num_classes: int, pretrained: str | os.PathLike = "none", output_stride: int = 0
) -> WSOLClassifier:
    """A WSOL classifier for ``num_classes`` classes.

    ``backbone``: a name of ``fcam.models.BACKBONES`` or ``torchvision/<name>``.
    ``pretrained``: ``"none"`` (random init), ``"imagenet"`` (torchvision's ImageNet
    weights for the trunk, from the torch hub cache or downloaded), or the path of
    a state dict: torchvision-format weights of the whole network or a full classifier's.
    ``output_stride``: 0 keeps the backbone's own; 8 or 16 dilate the last stages of a
    ``torchvision/<name>`` ResNet-family trunk.
    """
    if num_classes < 1:
        raise FcamError(f"num_classes must be at least 1, got {num_classes}")
    classifier = WSOLClassifier(backbone, _build_encoder(backbone, output_stride), num_classes)
    if pretrained == "imagenet":
        weights = imagenet_weights(backbone)
        load_backbone_state(classifier, download_imagenet(weights), weights.url)
    elif pretrained != "none":
        load_weights_file(classifier, Path(pretrained))
    return classifier


def build_decoder(classifier: WSOLClassifier) -> UNetDecoder:
    """The U-Net decoder that fits ``classifier``'s features."""
    encoder = classifier.encoder
    return UNetDecoder(encoder.out_channels, encoder.decoder_channels, center=encoder.decoder_center)


def build_fcam(classifier: WSOLClassifier) -> FCAMModel:
    """F-CAM on ``classifier``, which is frozen in place (no gradients, eval mode)."""
    return FCAMModel(classifier, build_decoder(classifier))
