"""Batched class activation maps of any classifier by any method of ``fcam.cams.registry``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from fcam.cams.job import CamJob, TopMapJob
from fcam.cams.normalize import minmax_normalize
from fcam.cams.registry import CAM_METHODS, TOP_MAP_CAM_METHODS, cam_method
from fcam.cams.types import CamOptions, CamResult
from fcam.errors import FcamError
from fcam.interpolation import resize_maps

__all__ = ["CAM_METHODS", "compute_cams", "explain", "explain_top_map"]


def explain(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    method: str,
    target_layer: nn.Module,
    fc: nn.Linear | None = None,
    options: CamOptions | None = None,
) -> CamResult:
    """Class activation maps of a batch, with the logits and the classes they explain.

    Args:
        model: the classifier, returning logits (B,C). Its train/eval mode is left as it is:
            use ``eval()``, so that BatchNorm does not mix the images of a batch.
        images: (B,3,H,W) model inputs.
        targets: (B,) class per image; None takes the model's prediction (argmax of the logits).
        method: a name of ``fcam.cams.CAM_METHODS``.
        target_layer: the submodule whose output A (B,K,h,w) the map combines; a layer that
            outputs tokens needs ``options.reshape_transform``.
        fc: the linear classifier whose weights ``"cam"`` uses (required for it, ignored otherwise).
        options: the methods' knobs (:class:`CamOptions`; default ``CamOptions()``).

    Returns:
        :class:`CamResult`: ``maps`` (B,h,w) float32 in [0, 1] (or (B,H',W') with
        ``options.size``), ``logits`` (B,C) of the clean images, ``targets`` (B,); detached,
        on the images' device.

    The one-pass methods take one forward pass for the whole batch, plus one
    ``torch.autograd.grad`` to the target layer for the gradient methods: the score
    differentiated is the sum over the batch of each image's target logit, which gives each
    image its own gradient as long as the images do not interact (eval mode).
    ``"smoothgradcampp"`` appends ``n_samples`` noisy copies of the batch to that same forward
    pass. ``"scorecam"`` adds K forward passes per image (K channels at the target layer), in
    chunks of ``options.scorecam_batch`` masked images.

    Each map is upsampled first, when ``options.size=(H, W)`` is given, and then min-max
    normalized per image, as wsolevaluation does (it resizes, then normalizes): the maps span
    [0, 1] exactly and a second normalization leaves them unchanged. A map with a NaN, or a
    constant one, becomes all zeros. (The F-CAM code normalizes at the layer's resolution and
    upsamples after, which differs by an affine rescaling per map.)

    No hook stays on the model and no parameter's ``.grad`` is modified, also when the model
    raises; frozen models and calls under ``torch.no_grad()`` or ``torch.inference_mode()`` work.
    """
    options = CamOptions() if options is None else options
    run = cam_method(method)
    if images.ndim != 4 or images.shape[0] == 0 or not images.is_floating_point():
        raise FcamError(
            f"images must be a non-empty float tensor (B,C,H,W), got {images.dtype} {tuple(images.shape)}"
        )
    # Outside inference mode, so that the gradients exist even when the caller is in it.
    with torch.inference_mode(False):
        return _run(run, CamJob(model, images, targets, target_layer, fc, options))


def explain_top_map(
    top: Tensor,
    head: Callable[[Tensor], Tensor],
    targets: Tensor | None,
    method: str,
    fc: nn.Linear | None = None,
    options: CamOptions | None = None,
) -> CamResult:
    """:func:`explain` for a batch whose target-layer output is already computed.

    Args:
        top: the target layer's output A (B,K,h,w) for the batch (e.g. from a training forward).
        head: the rest of the model, A to logits (B,C); the gradient methods differentiate it only.
        targets, fc, options: as in :func:`explain` (the options about inputs, ``n_samples``,
            ``noise_std``, ``generator``, ``scorecam_batch``, do not apply).
        method: a method of :data:`fcam.cams.registry.TOP_MAP_CAM_METHODS` (CAM and the one-pass
            gradient methods); the others need forward passes of their own and raise FcamError.

    Returns:
        :class:`CamResult`, the same maps as :func:`explain` on the images that gave ``top``.
    """
    options = CamOptions() if options is None else options
    run = cam_method(method)
    if method not in TOP_MAP_CAM_METHODS:
        raise FcamError(f"CAM method {method!r} needs its own forward passes; a computed top map serves "
                        f"{', '.join(TOP_MAP_CAM_METHODS)}")
    if top.ndim != 4 or top.shape[0] == 0 or not top.is_floating_point():
        raise FcamError(f"top must be a non-empty float tensor (B,K,h,w), got {top.dtype} {tuple(top.shape)}")
    with torch.inference_mode(False):
        return _run(run, TopMapJob(top, head, targets, fc, options))


def _run(run: Callable[[CamJob], Tensor], job: CamJob) -> CamResult:
    """A method's raw maps for ``job``, resized (``options.size``) then min-max normalized."""
    options = job.options
    maps = run(job).detach()
    if options.size is not None:
        maps = resize_maps(maps, options.size, options.interpolation)
    return CamResult(minmax_normalize(maps), job.logits, job.targets)


def compute_cams(
    model: nn.Module, images: Tensor, targets: Tensor | None, method: str, target_layer: nn.Module,
    fc: nn.Linear | None = None,
    size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
    n_samples: int = 4,
    noise_std: float = 0.3,
    gradcampp_variant: str = "paper",
    generator: torch.Generator | None = None,
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
    scorecam_batch: int = 32,
) -> Tensor:
    """Class activation maps (B,h,w), float32 in [0, 1], detached: ``explain(...).maps``.

    Args:
        model, images, targets, method, target_layer, fc: as in :func:`explain`.
        size, interpolation, n_samples, noise_std, gradcampp_variant, generator,
        reshape_transform, scorecam_batch: the fields of :class:`CamOptions`.

    Returns:
        The maps (B,h,w), or (B,H,W) with ``size=(H, W)``, on the images' device.
    """
    options = CamOptions(size=size, interpolation=interpolation, n_samples=n_samples, noise_std=noise_std,
                         gradcampp_variant=gradcampp_variant, generator=generator,
                         reshape_transform=reshape_transform, scorecam_batch=scorecam_batch)
    return explain(model, images, targets, method, target_layer, fc, options).maps
