"""The classifier's learning-rate schedule, set after every optimizer step: wsolevaluation's step
decay or a cosine to 0, after an optional linear warmup.

The factor is a pure function of the step index (:meth:`Schedule.factor`), and the index is the
scheduler's whole state, so a resumed run continues the very curve of an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from fcam.config import TrainConfig
from fcam.errors import FcamError


@dataclass(frozen=True)
class Schedule:
    """Learning-rate factor per optimizer step (``train.lr_schedule``, ``train.warmup_epochs``).

    'step' multiplies by ``decay_factor`` at the start of 1-based epochs ``decay_epochs``,
    ``2 x decay_epochs``, ...: wsolevaluation's ``main.py`` calls ``adjust_learning_rate(epoch + 1)``
    before training epoch ``epoch + 1`` and decays when that number is a multiple of
    ``lr_decay_frequency``, one epoch before a ``StepLR`` stepped after each epoch would.
    'cosine' goes from 1 to 0 over the steps after the warmup. The warmup multiplies either by
    ``(step + 1) / warmup_steps`` until it reaches 1.
    """

    kind: str
    steps_per_epoch: int
    epochs: int
    decay_epochs: int = 15
    decay_factor: float = 0.1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("step", "cosine"):
            raise ValueError(f"unknown schedule {self.kind!r}")
        if self.steps_per_epoch < 1 or self.epochs < 1 or self.decay_epochs < 1:
            raise ValueError(f"schedule needs positive steps per epoch, epochs and decay epochs: {self}")

    @classmethod
    def from_config(cls, train: TrainConfig, steps_per_epoch: int) -> Schedule:
        """The schedule of ``train`` for a loader of ``steps_per_epoch`` batches; FcamError when the
        warmup does not end before the run does."""
        warmup = max(1, round(train.warmup_epochs * steps_per_epoch)) if train.warmup_epochs > 0 else 0
        if warmup >= train.epochs * steps_per_epoch:
            raise FcamError(f"config key 'train.warmup_epochs' ({train.warmup_epochs:g}) must be shorter than the run "
                            f"(train.epochs={train.epochs})")
        return cls(train.lr_schedule, steps_per_epoch, train.epochs, train.lr_decay_epochs, train.lr_decay_factor,
                   warmup)

    def factor(self, step: int) -> float:
        """The multiplier of every base learning rate at 0-based optimizer step ``step``."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return warm * self.decay_factor ** ((epoch + 1) // self.decay_epochs)
        span = self.steps_per_epoch * self.epochs - self.warmup_steps
        progress = min(1.0, max(0, step - self.warmup_steps) / span)
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepwiseLR:
    """Sets each parameter group's learning rate to its initial one x ``schedule.factor(step)``,
    now for step 0 and after every ``optimizer.step()`` (a post-step hook, so the training loop
    needs no call; an AMP step skipped for an overflow does not advance it)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule) -> None:
        self.optimizer, self.schedule = optimizer, schedule
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.steps = 0
        self._apply()
        optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.schedule.factor(self.steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "steps" not in state:
            raise FcamError("the checkpoint's scheduler state was written by an older fcam (per-epoch StepLR); "
                            "it cannot be resumed: start a new run with --overwrite")
        self.steps = int(state["steps"])
        self._apply()
