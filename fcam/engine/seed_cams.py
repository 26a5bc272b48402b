"""The CAMs the decoder's seeds come from, taken from the F-CAM forward's own classifier pass.

The F-CAM model already runs the frozen classifier once per training step; its top map (the
CAM target layer's output) and head are all that CAM, Grad-CAM, Grad-CAM++, XGrad-CAM and
LayerCAM need: the gradient methods differentiate the target logit through the head only
(global average pooling and the linear layer), from a detached copy of the top map, so no
second trunk pass and no backward through the trunk happen. Methods needing other inputs
(Smooth-Grad-CAM++ and its noisy copies) still go through :func:`fcam.cams.compute_cams`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fcam.cams import compute_cams
from fcam.cams.methods import cam_map, gradcam_map, gradcampp_map, layercam_map, xgradcam_map
from fcam.cams.normalize import minmax_normalize
from fcam.cams.registry import gradcampp_variant as canonical_variant
from fcam.errors import FcamError
from fcam.interpolation import resize_maps

if TYPE_CHECKING:
    from fcam.models import WSOLClassifier

# Methods computed from the top map and the head alone (no extra forward).
TOP_MAP_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam")
_GRADIENT_MAPS = {"gradcam": gradcam_map, "xgradcam": xgradcam_map, "layercam": layercam_map}


def cams_from_top_map(
    classifier: WSOLClassifier,
    top: Tensor,
    targets: Tensor,
    method: str,
    size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
    gradcampp_variant: str = "paper",
) -> Tensor:
    """CAMs (B, h, w) in [0, 1], detached, from the classifier's top map ``top`` (B, C, h, w).

    Args:
        classifier: the (frozen, eval-mode) classifier that produced ``top``.
        top: its CAM target layer's output for the batch (``forward_features(x)[0][-1]``).
        targets: (B,) class of each image.
        method: one of :data:`TOP_MAP_METHODS`.
        size, interpolation, gradcampp_variant: as in :func:`fcam.cams.compute_cams`, whose
            maps these equal: resized to ``size`` first, then min-max normalized per image.

    Returns:
        float32 maps on ``top``'s device.
    """
    if method not in TOP_MAP_METHODS:
        raise FcamError(f"CAM method {method!r} needs its own forward; the top map serves {TOP_MAP_METHODS}")
    gradcampp_variant = canonical_variant(gradcampp_variant)
    targets = targets.to(device=top.device, dtype=torch.long)
    acts = top.detach().float()
    if method == "cam":
        maps = cam_map(acts, classifier.fc.weight.detach()[targets].float())
    else:
        grads = _head_gradients(classifier, top, targets)
        if method == "gradcampp":
            maps = gradcampp_map(acts, grads, gradcampp_variant)
        else:
            maps = _GRADIENT_MAPS[method](acts, grads)
    if size is not None:
        maps = resize_maps(maps, size, interpolation)
    return minmax_normalize(maps)


def _head_gradients(classifier: WSOLClassifier, top: Tensor, targets: Tensor) -> Tensor:
    """d (sum of each image's target logit) / d top, through the head only (float32)."""
    with torch.inference_mode(False), torch.enable_grad():
        # A map made under inference_mode cannot require grad: a normal copy of it can.
        leaf = (top.clone() if top.is_inference() else top.detach()).requires_grad_()
        score = classifier.head(leaf).gather(1, targets[:, None]).sum()
        (grads,) = torch.autograd.grad(score, leaf)
    return grads.float()


def seed_cams(
    classifier: WSOLClassifier,
    images: Tensor,
    targets: Tensor,
    features: Sequence[Tensor],
    method: str,
    gradcampp_variant: str = "paper",
) -> Tensor:
    """The decoder's seed CAMs (B, H, W) at the images' size, min-max normalized per image.

    ``features`` are the classifier's features of ``images`` from the F-CAM forward (top map
    last): the methods of :data:`TOP_MAP_METHODS` reuse them; the others run
    :func:`fcam.cams.compute_cams` on ``images``. Both give the same maps (bilinear upsampling).
    """
    size = tuple(images.shape[-2:])
    if method in TOP_MAP_METHODS:
        return cams_from_top_map(classifier, features[-1], targets, method, size=size,
                                 gradcampp_variant=gradcampp_variant)
    return compute_cams(classifier, images, targets, method, classifier.cam_target_layer, fc=classifier.fc,
                        size=size, gradcampp_variant=gradcampp_variant)
