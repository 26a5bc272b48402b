"""The options and the result of :func:`fcam.cams.explain`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fcam.cams.registry import gradcampp_variant
from fcam.errors import FcamError
from fcam.interpolation import INTERPOLATIONS

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass
class CamOptions:
    """The knobs of the CAM methods; each method reads the ones it uses.

    Attributes:
        size: (H, W) to upsample the maps to before the min-max normalization; None keeps
            the target layer's resolution.
        interpolation: a name of ``fcam.interpolation.INTERPOLATIONS``.
        n_samples: noisy copies per image of Smooth-GradCAM++.
        noise_std: std of the Gaussian noise Smooth-GradCAM++ adds to the model's input.
        gradcampp_variant: ``"paper"`` or ``"fcam-wsol"`` (alias ``"torchcam"``): the GradCAM++
            and Smooth-GradCAM++ formula (``fcam.cams.methods``).
        generator: random generator of Smooth-GradCAM++'s noise (on the images' device).
        reshape_transform: maps the target layer's output to (B,K,h,w) before the formulas,
            for layers that output tokens (``fcam.cams.vit_reshape``, ``fcam.cams.swin_reshape``).
            It must only select and rearrange entries (drop tokens, reshape, permute): it is
            applied to the output and to the gradients w.r.t. that output alike.
        scorecam_batch: masked images per forward pass of Score-CAM (its memory knob).
    """

    size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    n_samples: int = 4
    noise_std: float = 0.3
    gradcampp_variant: str = "paper"
    generator: torch.Generator | None = None
    reshape_transform: Callable[[Tensor], Tensor] | None = None
    scorecam_batch: int = 32

    def __post_init__(self) -> None:
        """Raise FcamError naming the first invalid option."""
        size = self.size
        if size is not None and (len(size) != 2 or any(int(s) != s or s < 1 for s in size)):
            raise FcamError(f"size must be two positive integers (H, W), got {size!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise FcamError(
                f"unknown interpolation {self.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
            )
        gradcampp_variant(self.gradcampp_variant)
        if self.n_samples < 1 or self.noise_std < 0:
            raise FcamError(
                f"smoothgradcampp needs n_samples >= 1 and noise_std >= 0, got {self.n_samples} and {self.noise_std}"
            )
        if self.scorecam_batch < 1:
            raise FcamError(f"scorecam_batch must be >= 1, got {self.scorecam_batch}")
        if self.reshape_transform is not None and not callable(self.reshape_transform):
            raise FcamError(f"reshape_transform must be callable, got {type(self.reshape_transform).__name__}")


@dataclass
class CamResult:
    """What :func:`fcam.cams.explain` returns; all tensors detached, on the images' device.

    Attributes:
        maps: (B,h,w) float32 in [0, 1], min-max normalized per image.
        logits: (B,num_classes) of the clean images (the forward pass the maps came from).
        targets: (B,) int64, the class each map explains (given, or the predicted one).
    """

    maps: Tensor
    logits: Tensor
    targets: Tensor
