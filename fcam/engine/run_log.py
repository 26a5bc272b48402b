"""What a training run logs in its folder: one row per epoch (``log.jsonl``), one row every
``log.every_n_steps`` training steps (``steps.jsonl``) and, with ``log.tensorboard``, TensorBoard
event files (``tensorboard/``: losses, learning rates, validation metrics and the maps of a few
fixed validation images).

Steps are numbered over the whole run (``epoch * steps_per_epoch + step``). A resumed run drops
the rows and events written after its checkpoint (a run killed mid-epoch wrote some), then
appends: the files read as those of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fcam.config import LogConfig
from fcam.errors import FcamError

EPOCHS_FILE, STEPS_FILE, TENSORBOARD_DIR = "log.jsonl", "steps.jsonl", "tensorboard"


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file (none if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def learning_rates(optimizer: Any) -> dict[str, float]:
    """``lr_0``, ``lr_1``, ...: the learning rate of each parameter group."""
    return {f"lr_{i}": float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}


def open_tensorboard(log_dir: Path, purge_step: int | None):
    """A TensorBoard ``SummaryWriter``; FcamError when the optional package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FcamError("config key 'log.tensorboard' is true but the tensorboard package is not installed: "
                        "pip install 'fcam[tensorboard]' (or set log.tensorboard=false)") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class RunLog:
    """The logs of one run, written by rank 0 (``enabled``); every method is a no-op elsewhere.

    ``start_epoch`` is the first epoch this process trains (0, or the resumed epoch).
    """

    def __init__(self, run_dir: Path, cfg: LogConfig, steps_per_epoch: int, start_epoch: int,
                 enabled: bool = True) -> None:
        if cfg.every_n_steps < 0:
            raise FcamError(f"config key 'log.every_n_steps' must be >= 0, got {cfg.every_n_steps}")
        self.run_dir, self.cfg, self.enabled = Path(run_dir), cfg, enabled
        self.steps_per_epoch = steps_per_epoch
        self.writer = None
        self._window: dict[str, float] = {}
        self._window_steps = self._window_images = 0
        self._window_start = time.perf_counter()
        if not enabled:
            return
        steps = self.run_dir / STEPS_FILE
        if steps.is_file():
            _write_rows(steps, [row for row in read_rows(steps) if row["epoch"] <= start_epoch])
        if cfg.tensorboard:
            first_step = start_epoch * steps_per_epoch + 1
            self.writer = open_tensorboard(self.run_dir / TENSORBOARD_DIR, first_step if start_epoch else None)

    def global_step(self, epoch: int, step: int) -> int:
        """The run-wide number of step ``step`` (0-based) of epoch ``epoch`` (0-based), from 1."""
        return epoch * self.steps_per_epoch + step + 1

    def step(self, epoch: int, step: int, terms: dict[str, float], lrs: dict[str, float], images: int) -> None:
        """Record one training step; every ``every_n_steps`` steps write the mean of the loss terms
        over these steps, the learning rates and the images per second (all processes)."""
        if not self.enabled or not self.cfg.every_n_steps:
            return
        for key, value in terms.items():
            self._window[key] = self._window.get(key, 0.0) + value
        self._window_steps += 1
        self._window_images += images
        number = self.global_step(epoch, step)
        if number % self.cfg.every_n_steps:
            return
        seconds = time.perf_counter() - self._window_start
        row = {"epoch": epoch + 1, "step": number,
               **{k: v / self._window_steps for k, v in self._window.items()}, **lrs,
               "img_per_s": round(self._window_images / max(seconds, 1e-9), 2)}
        with open(self.run_dir / STEPS_FILE, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    self.writer.add_scalar(f"step/{key}", value, number)
        self._window, self._window_steps, self._window_images = {}, 0, 0
        self._window_start = time.perf_counter()

    def epoch(self, history: list[dict]) -> None:
        """Write ``log.jsonl`` (all epochs so far) and the last epoch's scalars to TensorBoard."""
        if not self.enabled:
            return
        _write_rows(self.run_dir / EPOCHS_FILE, history)
        if self.writer is not None:
            row = history[-1]
            number = row["epoch"] * self.steps_per_epoch
            for key, value in row.items():
                if key != "epoch":
                    section, _, name = key.partition("_")
                    tag = f"{section}/{name}" if section in ("train", "val", "lr") else f"epoch/{key}"
                    self.writer.add_scalar(tag, value, number)
            self.writer.flush()

    def maps(self, examples: list[dict], epoch: int) -> None:
        """Draw each validation example's map over its image (``examples`` as collected by
        :class:`fcam.engine.eval_run.MapCollector`)."""
        if self.writer is None or not examples:
            return
        from fcam.viz import overlay_heatmap

        number = (epoch + 1) * self.steps_per_epoch
        for example in sorted(examples, key=lambda e: e["index"]):
            picture = overlay_heatmap(example["image"], example["map"])
            self.writer.add_image(f"val_maps/image_{example['index']}", picture, number, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
