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
    "fcam.cams.types": ("CamOptions", "CamResult"),
    "fcam.cams.core": ("compute_cams", "explain", "explain_top_map"),
    "fcam.cams.normalize": ("minmax_normalize",),
    "fcam.cams.reshape": ("swin_reshape", "vit_reshape"),
}

__getattr__, __dir__, _lazy_names = lazy_attributes(__name__, _LAZY)
__all__ = ["CAM_METHODS", "GRADCAMPP_VARIANTS", "CamMethod", *_lazy_names]
