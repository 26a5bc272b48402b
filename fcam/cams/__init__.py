"""Class activation maps of any PyTorch classifier, batched: the methods of
``fcam.cams.registry`` (CAM, Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, XGrad-CAM, LayerCAM,
Score-CAM).

The registry imports without torch; the rest is imported on first use (PEP 562), so
``import fcam.cams.registry`` (the config, the commands' ``--help``) stays light.
"""

from __future__ import annotations

from fcam.lazy import lazy_attributes
from fcam.cams.registry import CAM_METHODS, GRADCAMPP_VARIANTS, CamMethod

_LAZY = {
    "CamOptions": "fcam.cams.types",
    "CamResult": "fcam.cams.types",
    "compute_cams": "fcam.cams.core",
    "explain": "fcam.cams.core",
    "explain_top_map": "fcam.cams.core",
    "minmax_normalize": "fcam.cams.normalize",
    "swin_reshape": "fcam.cams.reshape",
    "vit_reshape": "fcam.cams.reshape",
}

__all__ = ["CAM_METHODS", "GRADCAMPP_VARIANTS", "CamMethod", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
