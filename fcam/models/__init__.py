"""Models: WSOL backbones, the CAM-style classifier, the U-Net decoder and F-CAM.

The backbone registry imports without torch; the models and factories are imported on
first use (PEP 562), so ``import fcam.models.registry`` stays light.
"""

from __future__ import annotations

from fcam.lazy import lazy_attributes
from fcam.models.registry import BACKBONES, BackboneSpec, backbone_spec

_LAZY = {
    "fcam.models.fcam_model": ("FCAMModel",),
    "fcam.models.decoder": ("UNetDecoder",),
    "fcam.models.classifier": ("WSOLClassifier",),
    "fcam.models.encoder": ("WSOLEncoder",),
    "fcam.models.factory": ("build_classifier", "build_decoder", "build_fcam"),
    "fcam.models.inference": ("inference_copy",),
}

__getattr__, __dir__, _lazy_names = lazy_attributes(__name__, _LAZY)
__all__ = ["BACKBONES", "BackboneSpec", "backbone_spec", *_lazy_names]
