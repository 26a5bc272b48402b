"""Batched class activation maps of any classifier by one of six methods."""

import torch
from torch import Tensor, nn

from fcam.cams.capture import forward_with_activations
from fcam.cams.methods import (
    GRADCAMPP_VARIANTS,
    cam_map,
    gradcam_map,
    gradcampp_map,
    layercam_map,
    smooth_gradcampp_map,
    xgradcam_map,
)
from fcam.cams.normalize import minmax_normalize
from fcam.errors import FcamError
from fcam.interpolation import INTERPOLATIONS, resize_maps

CAM_METHODS = ("cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam")
# Methods whose map depends on the activations and plain gradients only.
_GRADIENT_MAPS = {"gradcam": gradcam_map, "xgradcam": xgradcam_map, "layercam": layercam_map}


def compute_cams(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    method: str,
    target_layer: nn.Module,
    fc: nn.Linear | None = None,
    size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
    n_samples: int = 4,
    noise_std: float = 0.3,
    gradcampp_variant: str = "paper",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Class activation maps (B,h,w), float32 in [0, 1], detached, on the images' device.

    images: (B,3,H,W) model inputs. targets: (B,) class per image; None takes the
    model's prediction (argmax of the logits). method: one of ``CAM_METHODS``.
    target_layer: the submodule whose output A (B,K,h,w) the map combines. fc: the
    linear classifier whose weights ``"cam"`` uses (required for it, ignored otherwise).

    The whole batch takes one forward pass, plus one ``torch.autograd.grad`` call for the
    gradient methods; the score differentiated is the sum over the batch of each
    image's target logit, which gives each image its own gradient as long as the images
    do not interact (``model.eval()``: the caller chooses the mode, it is not changed).
    ``"smoothgradcampp"`` appends ``n_samples`` noisy copies of the batch to that same
    forward pass: images + noise_std * N(0, 1) noise, drawn as one (n_samples,B,3,H,W)
    tensor from ``generator`` (on the images' device); the noise is added to the network's (normalized) input
    with an absolute std, as in torchcam and the F-CAM code (no rescaling by the
    input's range as in SmoothGrad). ``gradcampp_variant`` picks the GradCAM++ formula
    (see ``fcam.cams.methods``).

    Each map is upsampled first, when ``size=(H, W)`` is given (``interpolation``: a name of
    ``fcam.interpolation.INTERPOLATIONS``), and then min-max normalized per
    image, as wsolevaluation does (it resizes, then normalizes): the returned maps span
    [0, 1] exactly and a second normalization leaves them unchanged. A map with a NaN,
    or a constant one, becomes all zeros. (The F-CAM code normalizes at the layer's
    resolution and upsamples after, which differs by an affine rescaling per map.)

    No hook stays on the model and no parameter's ``.grad`` is modified, also when the
    model raises; frozen models and calls under ``torch.no_grad()`` work.
    """
    _check_arguments(images, method, fc, size, interpolation, n_samples, noise_std, gradcampp_variant)
    # Outside inference mode, so that the gradients exist even when the caller is in it.
    with torch.inference_mode(False):
        batch_size = images.shape[0]
        model_input = images
        if method == "smoothgradcampp":
            model_input = torch.cat([images, _noisy_copies(images, n_samples, noise_std, generator)])
        logits, acts = forward_with_activations(model, model_input, target_layer, track_grad=method != "cam")
        targets = _resolve_targets(targets, logits[:batch_size].detach())
        clean_acts = acts[:batch_size].detach().float()

        if method == "cam":
            maps = cam_map(clean_acts, _class_weights(fc, targets, clean_acts.shape[1]))
        elif method == "smoothgradcampp":
            grads = _target_gradients(logits[batch_size:], acts, targets)[batch_size:]
            noisy_grads = grads.unflatten(0, (n_samples, batch_size))
            maps = smooth_gradcampp_map(clean_acts, noisy_grads, gradcampp_variant)
        else:
            grads = _target_gradients(logits, acts, targets)
            if method == "gradcampp":
                maps = gradcampp_map(clean_acts, grads, gradcampp_variant)
            else:
                maps = _GRADIENT_MAPS[method](clean_acts, grads)

        if size is not None:
            maps = resize_maps(maps, size, interpolation)
        return minmax_normalize(maps)


def _noisy_copies(
    images: Tensor, n_samples: int, noise_std: float, generator: torch.Generator | None
) -> Tensor:
    """n_samples noisy copies of the batch, copy-major: (n_samples * B, C, H, W)."""
    noise = torch.randn(
        (n_samples, *images.shape), generator=generator, device=images.device, dtype=images.dtype
    )
    return (images + noise_std * noise).flatten(0, 1)


def _target_gradients(logits: Tensor, acts: Tensor, targets: Tensor) -> Tensor:
    """d score / d acts (float32) where score sums each row's target logit.

    ``logits`` may hold several copies of the batch (rows ``i`` and ``i + B`` share the
    target of image ``i``); one backward then gives every row its own gradient.
    """
    with torch.enable_grad():
        row_targets = targets.repeat(logits.shape[0] // targets.shape[0])
        score = logits.gather(1, row_targets[:, None]).sum()
    (grads,) = torch.autograd.grad(score, acts)
    return grads.float()


def _check_arguments(
    images: Tensor,
    method: str,
    fc: nn.Linear | None,
    size: tuple[int, int] | None,
    interpolation: str,
    n_samples: int,
    noise_std: float,
    gradcampp_variant: str,
) -> None:
    """Raise FcamError naming the first invalid argument."""
    if method not in CAM_METHODS:
        raise FcamError(f"unknown CAM method {method!r}; expected one of {', '.join(CAM_METHODS)}")
    if images.ndim != 4 or images.shape[0] == 0 or not images.is_floating_point():
        raise FcamError(
            f"images must be a non-empty float tensor (B,C,H,W), got {images.dtype} {tuple(images.shape)}"
        )
    if method == "cam" and not isinstance(fc, nn.Linear):
        raise FcamError("CAM method 'cam' needs fc, the model's final nn.Linear layer")
    if size is not None and (len(size) != 2 or any(int(s) != s or s < 1 for s in size)):
        raise FcamError(f"size must be two positive integers (H, W), got {size!r}")
    if interpolation not in INTERPOLATIONS:
        raise FcamError(
            f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
        )
    if gradcampp_variant not in GRADCAMPP_VARIANTS:
        raise FcamError(
            f"unknown gradcampp_variant {gradcampp_variant!r}; "
            f"expected one of {', '.join(GRADCAMPP_VARIANTS)}"
        )
    if method == "smoothgradcampp" and (n_samples < 1 or noise_std < 0):
        raise FcamError(
            f"smoothgradcampp needs n_samples >= 1 and noise_std >= 0, got {n_samples} and {noise_std}"
        )


def _resolve_targets(targets: Tensor | None, logits: Tensor) -> Tensor:
    """Per-image target classes on the logits' device: the given ones, checked, or the argmax."""
    if targets is None:
        return logits.argmax(dim=1)
    batch_size, num_classes = logits.shape
    if targets.shape != (batch_size,) or targets.is_floating_point() or targets.is_complex():
        raise FcamError(
            f"targets must be an integer tensor of shape ({batch_size},), "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    targets = targets.to(device=logits.device, dtype=torch.long)
    outside = (targets < 0) | (targets >= num_classes)
    if outside.any():
        raise FcamError(f"targets must lie in [0, {num_classes}), got {targets[outside].tolist()}")
    return targets


def _class_weights(fc: nn.Linear, targets: Tensor, num_channels: int) -> Tensor:
    """Rows of the classifier's weight matrix for each image's target class (B,K)."""
    if fc.in_features != num_channels:
        raise FcamError(
            f"fc takes {fc.in_features} features but the target layer has {num_channels} channels"
        )
    return fc.weight.detach()[targets].float()
