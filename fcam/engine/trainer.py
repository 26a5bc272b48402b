"""The training loop both commands share: epochs, AMP, non-finite-loss guard, per-epoch
validation, model selection, atomic checkpoints, resume, and a JSONL log.

A *task* (:class:`fcam.engine.tasks.ClassifierTask`, :class:`fcam.engine.tasks.DecoderTask`)
supplies the model, the optimizer and what one step and one validation mean; this module owns
the rest, so both commands checkpoint, resume and log the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from fcam.config import Config
from fcam.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fcam.engine.distributed import (DistContext, barrier, broadcast_buffers, broadcast_flag,
                                     cleanup_distributed, setup_distributed)
from fcam.engine.report import scalar_metrics
from fcam.engine.seeding import seed_everything
from fcam.errors import FcamError

LAST, BEST, LOG, CONFIG, SUMMARY = "last.pt", "best.pt", "log.jsonl", "config.yaml", "summary.json"


class Task(Protocol):
    """What the loop needs from a training recipe."""

    kind: str                     # checkpoint kind: 'classifier' or 'fcam'
    model: torch.nn.Module        # the unwrapped model (DDP wraps it for training steps only)
    selection_key: str            # validation metric to maximize (MaxBoxAcc or PxAP)
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader

    def losses(self, batch: dict) -> dict[str, torch.Tensor]: ...      # must hold 'loss'
    def set_epoch(self, epoch: int) -> None: ...
    def end_epoch(self) -> None: ...                                   # schedulers, ELB t
    def validate(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NonFiniteLoss(FcamError):
    """Raised when a loss becomes NaN or infinite; the last good checkpoint is left in place."""


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool, create: bool = True) -> Path:
    """Check that ``run_dir`` can take this run: empty, resumable (--resume) or --overwrite.

    Every rank checks (so all fail alike); only the one with ``create`` clears and creates it.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / LAST).is_file():
            raise FcamError(f"--resume: no checkpoint to resume from at {run_dir / LAST}")
        return run_dir
    if (run_dir / LAST).exists() and not overwrite:
        state = "a finished run" if (run_dir / SUMMARY).exists() else "an unfinished run (use --resume)"
        raise FcamError(f"--output {run_dir} holds {state}; pass --overwrite to start over")
    if create:
        if overwrite:
            for name in (LAST, BEST, LOG, SUMMARY):
                (run_dir / name).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _write_log(path: Path, history: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in history))


def train_one_epoch(task: Task, ctx: DistContext, epoch: int, scaler: torch.amp.GradScaler,
                    use_amp: bool) -> dict[str, float]:
    """One pass over the training loader; returns the mean of every loss term."""
    totals: dict[str, float] = {}
    steps = 0
    bar = tqdm(task.train_loader, desc=f"epoch {epoch + 1} train", leave=False, dynamic_ncols=True,
               disable=None if ctx.is_main else True)
    for step, batch in enumerate(bar):
        with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=use_amp):
            terms = task.losses(batch)
        loss = terms["loss"]
        if broadcast_flag(not bool(torch.isfinite(loss.detach()).all()), ctx):
            raise NonFiniteLoss(f"non-finite loss at epoch {epoch + 1}, step {step + 1}: "
                                f"{ {k: float(v.detach()) for k, v in terms.items()} }; training stopped, "
                                f"the last good checkpoint is kept")
        task.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(task.optimizer)
        scaler.update()
        for key, value in terms.items():
            totals[key] = totals.get(key, 0.0) + float(value.detach())
        steps += 1
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return {key: value / max(steps, 1) for key, value in totals.items()}


def fit(task: Task, ctx: DistContext, run_dir: Path, epochs: int, config: dict, resume: bool) -> dict:
    """Train ``task`` for ``epochs`` epochs in ``run_dir``; returns the summary of the best epoch.

    The checkpoint ``last.pt`` is written after every epoch (then ``best.pt`` when the
    validation metric improved) and holds the task's state, every RNG's state, the history and
    the config; ``resume`` continues from it with the same random sequence, so an interrupted
    run ends with the weights and metrics of an uninterrupted one.
    """
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 0
    if resume:
        state = load_checkpoint(run_dir / LAST, kind=task.kind)
        task.load_state_dict(state["task"])
        set_rng_state(state["rng"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        if ctx.is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}", file=sys.stderr)
    if ctx.is_main:
        (run_dir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    use_amp = ctx.device.type == "cuda" and bool(config["train"]["amp"])
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_amp)
    for epoch in range(start_epoch, epochs):
        started = time.time()
        task.set_epoch(epoch)
        train_stats = train_one_epoch(task, ctx, epoch, scaler, use_amp)
        broadcast_buffers(task.model, ctx)
        metrics = task.validate()
        task.end_epoch()
        score = float(metrics[task.selection_key])
        improved = best is None or score > best["score"]
        row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items()},
               **{f"val_{k}": v for k, v in scalar_metrics(metrics).items()}, "seconds": round(time.time() - started, 2)}
        history.append(row)
        if improved:
            best = {"epoch": epoch + 1, "score": score, "metric": task.selection_key, "metrics": scalar_metrics(metrics)}
        if ctx.is_main:
            state = {"kind": task.kind, "config": config, "epoch": epoch, "task": task.state_dict(),
                     "rng": rng_state(), "history": history, "best": best}
            save_checkpoint(state, run_dir / LAST)
            if improved:
                save_checkpoint(state, run_dir / BEST)
            _write_log(run_dir / LOG, history)
            print(f"epoch {epoch + 1}/{epochs}  loss {train_stats.get('loss', float('nan')):.4f}  "
                  f"val {task.selection_key} {score:.2f}  best {best['score']:.2f} (epoch {best['epoch']})  "
                  f"{row['seconds']:.0f}s", file=sys.stderr, flush=True)
        barrier(ctx)
    summary = {"best": best, "epochs": epochs, "last": history[-1] if history else None}
    if ctx.is_main:
        (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def run_training(cfg: Config, output: str | Path, resume: bool, overwrite: bool, epochs: int,
                 make_task: Callable[[Config, DistContext], Task]) -> dict:
    """What both training commands do: join the process group, prepare the run directory, seed,
    build the task and :func:`fit` it; returns the summary (printed on rank 0)."""
    ctx = setup_distributed(cfg.device)
    try:
        run_dir = prepare_run_dir(output, resume, overwrite, create=ctx.is_main)
        seed_everything(cfg.train.seed, ctx.rank)
        summary = fit(make_task(cfg, ctx), ctx, run_dir, epochs, cfg.to_dict(), resume)
        if ctx.is_main:
            best = summary["best"]
            print(f"best {best['metric']} {best['score']:.2f} at epoch {best['epoch']}; checkpoints in {run_dir}",
                  file=sys.stderr)
        return summary
    finally:
        cleanup_distributed()
