"""Absolute size constraint on both maps, enforced with the extended log-barrier (Kervadec et al. 2019)."""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

from fcam.errors import FcamError

__all__ = ["ExtendedLogBarrier", "SizeConstraintLoss"]


class ExtendedLogBarrier:
    """psi_t(z) = -(1/t) log(-z) for z <= -1/t^2, else t z - (1/t) log(1/t^2) + 1/t.

    A penalty for the constraint z <= 0 that stays finite and differentiable everywhere (linear
    past the switch point, C^1 there). ``t`` grows by ``t_mult`` at each :meth:`step` (once per
    epoch), up to ``t_max``, tightening the barrier.
    """

    def __init__(self, t_init: float = 1.0, t_mult: float = 1.01, t_max: float = 10.0) -> None:
        if not (t_init > 0 and t_mult >= 1 and t_max >= t_init):
            raise FcamError(
                f"log-barrier needs t_init > 0, t_mult >= 1 and t_max >= t_init, got "
                f"t_init={t_init}, t_mult={t_mult}, t_max={t_max}"
            )
        self._t = float(t_init)
        self.t_mult = float(t_mult)
        self.t_max = float(t_max)

    @property
    def t(self) -> float:
        return self._t

    def __call__(self, z: Tensor) -> Tensor:
        t = self._t
        switch = -1.0 / t**2
        on_barrier = z <= switch
        # The log only sees admissible values, so the branch not taken has no NaN gradient.
        barrier = -torch.log(-torch.where(on_barrier, z, torch.full_like(z, switch))) / t
        linear = t * z - math.log(1.0 / t**2) / t + 1.0 / t
        return torch.where(on_barrier, barrier, linear)

    def step(self) -> None:
        """Tighten the barrier (call after each epoch)."""
        self._t = min(self._t * self.t_mult, self.t_max)

    def state_dict(self) -> dict[str, float]:
        return {"t": self._t}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self._t = float(state["t"])


class SizeConstraintLoss(nn.Module):
    """weight * 1/2 * sum_r mean_batch psi_t(-size_r), size_r = sum over pixels of S^r (absolute).

    Pushes every map (background and foreground) away from empty. Computed in float32 (float64
    inputs stay float64), autocast or not: sizes reach H*W. The owner of ``barrier`` tightens it
    once per epoch (:meth:`ExtendedLogBarrier.step`) and saves its state.
    """

    def __init__(self, weight: float = 0.1, barrier: ExtendedLogBarrier | None = None) -> None:
        super().__init__()
        self.weight = weight
        self.barrier = barrier if barrier is not None else ExtendedLogBarrier()

    def forward(self, probs: Tensor) -> Tensor:
        """Scalar loss of (B, K, H, W) probability maps."""
        if probs.dim() != 4:
            raise ValueError(f"size constraint expects probs (B, K, H, W), got {tuple(probs.shape)}")
        with torch.autocast(device_type=probs.device.type, enabled=False):
            sizes = probs.to(torch.promote_types(probs.dtype, torch.float32)).sum(dim=(2, 3))
            return self.weight * 0.5 * self.barrier(-sizes).mean(dim=0).sum()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, t={self.barrier.t:.4g}"
