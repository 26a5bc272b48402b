"""Models: WSOL backbones, the CAM-style classifier, the U-Net decoder and F-CAM.

The backbone registry imports without torch; the models and factories are imported on
first use (PEP 562), so ``import fcam.models.registry`` stays light.
"""

from __future__ import annotations

from fcam.lazy import lazy_attributes
from fcam.models.registry import BACKBONES, BackboneSpec, backbone_spec

_LAZY = {
    "FCAMModel": "fcam.models.fcam_model",
    "UNetDecoder": "fcam.models.decoder",
    "WSOLClassifier": "fcam.models.classifier",
    "WSOLEncoder": "fcam.models.encoder",
    "build_classifier": "fcam.models.factory",
    "build_decoder": "fcam.models.factory",
    "build_fcam": "fcam.models.factory",
    "inference_copy": "fcam.models.inference",
}

__all__ = ["BACKBONES", "BackboneSpec", "backbone_spec", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
