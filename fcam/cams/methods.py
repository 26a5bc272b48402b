"""The six CAM formulas: raw (un-normalized) maps (B,h,w) from activations and gradients.

``acts`` is the target layer's output A (B,K,h,w); ``grads`` is g = d score_c / dA for
each image's target class c, same shape. Formulas follow the methods' papers; where
the F-CAM code (a copy of torchcam) computes something else, the ``"torchcam"``
variant of GradCAM++ reproduces it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

GRADCAMPP_VARIANTS = ("paper", "torchcam")

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
    """Grad-CAM++. ``variant="torchcam"``: alpha = g^2, as torchcam and the F-CAM code compute it.

    Their division ``alpha[mask].div_(...)`` divides a copy made by boolean-mask
    indexing, so it leaves alpha = g^2 and w_k = sum_hw g^2 relu(g).
    """
    grad2 = grads.square()
    if variant == "torchcam":
        weights = (grad2 * F.relu(grads)).sum(dim=_SPATIAL)
        return F.relu(_channel_weighted_sum(acts, weights))
    return _gradcampp_from_moments(acts, grad2, grad2 * grads, F.relu(grads))


def smooth_gradcampp_map(acts: Tensor, noisy_grads: Tensor, variant: str = "paper") -> Tensor:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with gradients of noisy inputs.

    ``noisy_grads`` (n,B,K,h,w) are the gradients for n noisy copies of each image;
    ``acts`` are the clean image's activations. ``"paper"``: the paper's alpha with
    g^2, g^3 and relu(g) each averaged over the n copies. ``"torchcam"``: what
    torchcam and the F-CAM code compute: alpha = m2 / (2 m2 + sum_hw(A m3)) with the
    averages m2, m3, times relu(g) of the last noisy copy only. (Where m2 = 0, torchcam
    gets 0/0 and drops the whole channel; here only that position's alpha is 0.)
    """
    grad2 = noisy_grads.square()
    mean_grad2 = grad2.mean(dim=0)
    mean_grad3 = (grad2 * noisy_grads).mean(dim=0)
    if variant == "torchcam":
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
