"""The registered functions of the one-pass methods: each asks its :class:`CamJob` for the
activations (and gradients) and applies its formula of ``fcam.cams.methods``."""

from __future__ import annotations

import torch
from torch import Tensor

from fcam.cams.job import CamJob
from fcam.cams.methods import (cam_map, gradcam_map, gradcampp_map, layercam_map, smooth_gradcampp_map,
                               xgradcam_map)


def cam(job: CamJob) -> Tensor:
    """CAM: one forward pass, the classifier's weights of each target class."""
    acts = job.activations()
    return cam_map(acts, job.class_weights(acts.shape[1]))


def gradcam(job: CamJob) -> Tensor:
    return gradcam_map(*job.gradients())


def gradcampp(job: CamJob) -> Tensor:
    return gradcampp_map(*job.gradients(), job.options.gradcampp_variant)


def smoothgradcampp(job: CamJob) -> Tensor:
    """Smooth-GradCAM++: the noisy copies share the clean images' forward pass."""
    options = job.options
    acts, grads = job.gradients(_noisy_copies(job.images, options.n_samples, options.noise_std, options.generator))
    return smooth_gradcampp_map(acts, grads.unflatten(0, (options.n_samples, job.batch_size)),
                                options.gradcampp_variant)


def xgradcam(job: CamJob) -> Tensor:
    return xgradcam_map(*job.gradients())


def layercam(job: CamJob) -> Tensor:
    return layercam_map(*job.gradients())


def _noisy_copies(images: Tensor, n_samples: int, noise_std: float, generator: torch.Generator | None) -> Tensor:
    """n_samples noisy copies of the batch, copy-major: (n_samples * B, C, H, W).

    The noise, images + noise_std * N(0, 1) drawn as one (n_samples,B,C,H,W) tensor, is added
    to the network's (normalized) input with an absolute std, as in torchcam and the F-CAM code
    (no rescaling by the input's range as in SmoothGrad).
    """
    noise = torch.randn((n_samples, *images.shape), generator=generator, device=images.device, dtype=images.dtype)
    return (images + noise_std * noise).flatten(0, 1)
