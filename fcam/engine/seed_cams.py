"""The CAMs the decoder's seeds come from, taken from the F-CAM forward's own classifier pass.

The F-CAM model already runs the frozen classifier once per training step. The methods flagged
``top_map`` in :data:`fcam.cams.registry.CAM_METHODS` (CAM, Grad-CAM, Grad-CAM++, XGrad-CAM,
LayerCAM) need only its top map (the CAM target layer's output) and its head: the gradient
methods differentiate the target logit through the head only (global average pooling and the
linear layer), so no second trunk pass and no backward through the trunk happen
(:func:`fcam.cams.explain_top_map`). The others (Smooth-Grad-CAM++ and its noisy copies,
Score-CAM) still go through :func:`fcam.cams.explain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from fcam.cams import CamOptions, explain, explain_top_map
from fcam.cams.registry import TOP_MAP_CAM_METHODS

if TYPE_CHECKING:
    from fcam.models import WSOLClassifier


def seed_cams(
    classifier: WSOLClassifier,
    images: Tensor,
    targets: Tensor,
    features: Sequence[Tensor],
    method: str,
    gradcampp_variant: str = "paper",
) -> Tensor:
    """The decoder's seed CAMs (B, H, W) at the images' size, min-max normalized per image, detached.

    ``features`` are the classifier's features of ``images`` from the F-CAM forward (top map
    last). Both paths give the maps of :func:`fcam.cams.compute_cams` (bilinear upsampling).
    """
    options = CamOptions(size=tuple(images.shape[-2:]), gradcampp_variant=gradcampp_variant)
    if method in TOP_MAP_CAM_METHODS:
        result = explain_top_map(features[-1], classifier.head, targets, method, fc=classifier.fc, options=options)
    else:
        result = explain(classifier, images, targets, method, classifier.cam_target_layer, fc=classifier.fc,
                         options=options)
    return result.maps
