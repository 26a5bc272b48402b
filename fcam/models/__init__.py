"""Models: WSOL backbones, the CAM-style classifier, the U-Net decoder and F-CAM."""

from fcam.models.classifier import WSOLClassifier
from fcam.models.decoder import UNetDecoder
from fcam.models.encoder import WSOLEncoder
from fcam.models.fcam_model import FCAMModel
from fcam.models.registry import BACKBONES, backbone_spec, build_classifier, build_decoder, build_fcam

__all__ = [
    "BACKBONES",
    "FCAMModel",
    "UNetDecoder",
    "WSOLClassifier",
    "WSOLEncoder",
    "backbone_spec",
    "build_classifier",
    "build_decoder",
    "build_fcam",
]
