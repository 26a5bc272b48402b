"""The CAM formulas of the one-pass methods: raw (un-normalized) maps (B,h,w) from
activations and gradients.

``acts`` is the target layer's output A (B,K,h,w); ``grads`` is g = d score_c / dA for
each image's target class c, same shape. Formulas follow the methods' papers; where
the F-CAM code (sbelharbi/fcam-wsol, a copy of torchcam) computes something else, the
``"fcam-wsol"`` variant of GradCAM++ (old name ``"torchcam"``) reproduces it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from fcam.cams.registry import GRADCAMPP_VARIANTS, gradcampp_variant

__all__ = ["GRADCAMPP_VARIANTS", "cam_map", "gradcam_map", "gradcampp_map", "layercam_map", "scorecam_map",
           "smooth_gradcampp_map", "xgradcam_map"]

_SPATIAL = (2, 3)


def _divide_or_zero(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, and 0 where the denominator is exactly 0.

    Used instead of adding an epsilon: squared gradients of a many-class head are
    often far below any fixed epsilon, which would then dominate the ratio.
    """
    zero = denominator == 0
    ratio = numerator / denominator.masked_fill(zero, 1.0)
    return ratio.masked_fill(zero, 0.0)


def _channel_weighted_sum(acts: Tensor, weights: Tensor) -> Tensor:
    """sum_k weights[b,k] * acts[b,k]: (B,K) x (B,K,h,w) -> (B,h,w)."""
    return torch.einsum("bk,bkhw->bhw", weights, acts)


def cam_map(acts: Tensor, class_weights: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016): sum_k w_ck A_k with the classifier's weights (B,K) of class c.

    No ReLU, as in the F-CAM code.
    """
    return _channel_weighted_sum(acts, class_weights)


def gradcam_map(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): relu(sum_k mean_hw(g_k) A_k)."""
    return F.relu(_channel_weighted_sum(acts, grads.mean(dim=_SPATIAL)))


def _gradcampp_from_moments(acts: Tensor, grad2: Tensor, grad3: Tensor, positive_grads: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) from the gradients' moments.

    alpha = g^2 / (2 g^2 + sum_hw(A_k) g^3), 0 where that denominator is 0 (which
    includes every position where g = 0); w_k = sum_hw alpha relu(g);
    map = relu(sum_k w_k A_k).
    """
    acts_total = acts.sum(dim=_SPATIAL, keepdim=True)
    alpha = _divide_or_zero(grad2, 2 * grad2 + acts_total * grad3)
    weights = (alpha * positive_grads).sum(dim=_SPATIAL)
    return F.relu(_channel_weighted_sum(acts, weights))


def gradcampp_map(acts: Tensor, grads: Tensor, variant: str = "paper") -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018): relu(sum_k w_k A_k).

    ``variant="paper"``: w_k = sum_hw alpha relu(g_k), alpha = g^2 / (2 g^2 + sum_hw(A_k) g^3),
    alpha = 0 where that denominator is 0.
    ``variant="fcam-wsol"`` (alias ``"torchcam"``): w_k = sum_hw g^2 relu(g_k), i.e. alpha = g^2,
    what sbelharbi/fcam-wsol and torchcam compute: their division ``alpha[mask].div_(...)``
    divides a copy made by boolean-mask indexing, so it is a no-op.
    """
    grad2 = grads.square()
    if gradcampp_variant(variant) == "fcam-wsol":
        weights = (grad2 * F.relu(grads)).sum(dim=_SPATIAL)
        return F.relu(_channel_weighted_sum(acts, weights))
    return _gradcampp_from_moments(acts, grad2, grad2 * grads, F.relu(grads))


def smooth_gradcampp_map(acts: Tensor, noisy_grads: Tensor, variant: str = "paper") -> Tensor:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with gradients of noisy inputs.

    ``noisy_grads`` (n,B,K,h,w) are the gradients g_j for n noisy copies of each image;
    ``acts`` are the clean image's activations A. With m2 = mean_j g_j^2, m3 = mean_j g_j^3:

    ``variant="paper"``: w_k = sum_hw alpha mean_j relu(g_j), alpha = m2 / (2 m2 + sum_hw(A_k) m3),
    alpha = 0 where that denominator is 0; map = relu(sum_k w_k A_k).
    ``variant="fcam-wsol"`` (alias ``"torchcam"``): what sbelharbi/fcam-wsol and torchcam compute:
    alpha = m2 / (2 m2 + sum_hw(A_k m3)) (the activations inside the spatial sum), times
    relu(g_n) of the last noisy copy only: w_k = sum_hw alpha relu(g_n). (Where that denominator
    is 0, torchcam gets 0/0 and drops the whole channel; here only that position's alpha is 0.)
    """
    grad2 = noisy_grads.square()
    mean_grad2 = grad2.mean(dim=0)
    mean_grad3 = (grad2 * noisy_grads).mean(dim=0)
    if gradcampp_variant(variant) == "fcam-wsol":
        denominator = 2 * mean_grad2 + (acts * mean_grad3).sum(dim=_SPATIAL, keepdim=True)
        alpha = _divide_or_zero(mean_grad2, denominator)
        weights = (alpha * F.relu(noisy_grads[-1])).sum(dim=_SPATIAL)
        return F.relu(_channel_weighted_sum(acts, weights))
    return _gradcampp_from_moments(acts, mean_grad2, mean_grad3, F.relu(noisy_grads).mean(dim=0))


def xgradcam_map(acts: Tensor, grads: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_hw(g_k A_k) / sum_hw(A_k) (0 if that sum is 0)."""
    weights = _divide_or_zero((grads * acts).sum(dim=_SPATIAL), acts.sum(dim=_SPATIAL))
    return F.relu(_channel_weighted_sum(acts, weights))


def layercam_map(acts: Tensor, grads: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): relu(sum_k relu(g_k) * A_k), position by position."""
    return F.relu((F.relu(grads) * acts).sum(dim=1))


def scorecam_map(acts: Tensor, scores: Tensor) -> Tensor:
    """Score-CAM (Wang et al., CVPRW 2020): relu(sum_k s_k A_k) with each channel's score s (B,K).

    s_k is the target class's softmax probability of the image masked by A_k (upsampled and
    min-max normalized): see ``fcam.cams.scorecam``.
    """
    return F.relu(_channel_weighted_sum(acts, scores))
