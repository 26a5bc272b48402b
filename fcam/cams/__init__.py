"""Class activation maps of any PyTorch classifier, batched: CAM, Grad-CAM, Grad-CAM++,
Smooth Grad-CAM++, XGrad-CAM and LayerCAM."""

from fcam.cams.core import CAM_METHODS, compute_cams
from fcam.cams.methods import GRADCAMPP_VARIANTS
from fcam.cams.normalize import minmax_normalize

__all__ = ["CAM_METHODS", "GRADCAMPP_VARIANTS", "compute_cams", "minmax_normalize"]
