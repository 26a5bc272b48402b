"""The training loop both commands share: epochs, AMP, non-finite-loss guard, per-epoch
validation, model selection, atomic checkpoints, resume, and the run's logs.

A *task* (:class:`fcam.engine.tasks.ClassifierTask`, :class:`fcam.engine.tasks.DecoderTask`)
supplies the model, the optimizer and what one step and one validation mean; this module owns
the rest, so both commands checkpoint, resume and log the same way. The loop itself switches the
model between ``train()`` and ``eval()``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from fcam.config import CommandKeys, Config, check_resume, value_of
from fcam.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fcam.engine.distributed import (DistContext, barrier, broadcast_buffers, broadcast_flag,
                                     cleanup_distributed, setup_distributed)
from fcam.engine.evaluation import OnBatch
from fcam.engine.report import scalar_metrics
from fcam.engine.run_log import EPOCHS_FILE, STEPS_FILE, TENSORBOARD_DIR, RunLog, learning_rates
from fcam.engine.seeding import seed_everything
from fcam.errors import FcamError

if TYPE_CHECKING:
    from fcam.engine.eval_run import MapCollector

LAST, BEST, CONFIG, SUMMARY = "last.pt", "best.pt", "config.yaml", "summary.json"


class Task(Protocol):
    """What the loop needs from a training recipe."""

    kind: str                     # checkpoint kind: 'classifier' or 'fcam'
    model: torch.nn.Module        # the unwrapped model (DDP wraps it for training steps only)
    selection_key: str            # validation metric to maximize (MaxBoxAcc, MaxBoxAccV2 or PxAP)
    select_last: bool             # optional: best.pt is the last epoch, not the best-validating one
    selection_burn_in: float      # optional: fraction of the first epochs that cannot be selected
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader

    def losses(self, batch: dict) -> dict[str, torch.Tensor]: ...      # must hold 'loss'
    def set_epoch(self, epoch: int) -> None: ...                       # sampler order, per-epoch seeds
    def end_epoch(self, train_stats: dict[str, float]) -> None: ...   # epoch's mean loss terms: ELB t, checks
    def validate(self, on_batch: OnBatch | None = None) -> dict[str, Any]: ...  # on_batch(batch, maps)
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
            for name in (LAST, BEST, EPOCHS_FILE, STEPS_FILE, SUMMARY):
                (run_dir / name).unlink(missing_ok=True)
            for events in (run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
                events.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _batch_size(batch: dict) -> int:
    return next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))


def train_one_epoch(task: Task, ctx: DistContext, epoch: int, scaler: torch.amp.GradScaler,
                    use_amp: bool, log: RunLog) -> dict[str, float]:
    """One pass over the training loader in train mode; returns the mean of every loss term."""
    task.model.train()
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
        lrs = learning_rates(task.optimizer)
        task.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(task.optimizer)
        scaler.update()
        values = {key: float(value.detach()) for key, value in terms.items()}
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
        steps += 1
        log.step(epoch, step, values, lrs, _batch_size(batch) * ctx.world_size)
        bar.set_postfix(loss=f"{values['loss']:.4f}")
    return {key: value / max(steps, 1) for key, value in totals.items()}


def _map_examples(log: RunLog, cfg: Config, ctx: DistContext) -> MapCollector | None:
    """The collector of the validation maps drawn in TensorBoard: the first images of rank 0's shard."""
    if log.writer is None or not cfg.log.tensorboard_images:
        return None
    from fcam.engine.eval_run import MapCollector

    return MapCollector(None, set(range(0, cfg.log.tensorboard_images * ctx.world_size, ctx.world_size)))


def fit(task: Task, ctx: DistContext, run_dir: Path, cfg: Config, epochs: int,
        resume_from: dict | None = None) -> dict:
    """Train ``task`` in ``run_dir`` up to ``epochs`` epochs, validating after each one.

    ``last.pt`` is written after every epoch (then ``best.pt`` when the validation metric
    improved) and holds the task's state, every RNG's state, the history and the config; a run
    resumed from it continues the same random sequence, so an interrupted run ends with the
    weights, metrics and logs of an uninterrupted one.

    Args:
        task: the recipe: model, optimizer, loaders, what a step and a validation are.
        ctx: this process's rank, world size and device.
        run_dir: the run folder, prepared by :func:`prepare_run_dir`.
        cfg: the resolved config; saved with every checkpoint and as ``config.yaml``; the loop
            reads ``train.amp`` and ``log.*``.
        epochs: the number of epochs of the whole run (a resumed run trains the remaining ones).
        resume_from: the state read from ``last.pt`` to continue from; None starts a new run.

    Returns:
        The summary (also written to ``summary.json``): ``best`` (epoch, score, metric name and
        validation metrics of the best epoch), ``epochs`` and ``last`` (the last epoch's log row).

    Raises:
        NonFiniteLoss: a loss became NaN or infinite; the last good checkpoint is kept.
    """
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 0
    if resume_from is not None:
        task.load_state_dict(resume_from["task"])
        set_rng_state(resume_from["rng"])
        history, best, start_epoch = resume_from["history"], resume_from["best"], resume_from["epoch"] + 1
        if ctx.is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}", file=sys.stderr)
    if ctx.is_main:
        (run_dir / CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    use_amp = ctx.device.type == "cuda" and cfg.train.amp
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_amp)
    log = RunLog(run_dir, cfg.log, len(task.train_loader), start_epoch, enabled=ctx.is_main)
    # Epochs up to this index (0-based) become best.pt whatever they score; selection starts there
    # (the epsilon keeps e.g. 0.57 * 100 from flooring to 56).
    first_selectable = math.floor(getattr(task, "selection_burn_in", 0.0) * epochs + 1e-9)
    try:
        for epoch in range(start_epoch, epochs):
            started = time.time()
            task.set_epoch(epoch)
            lrs = learning_rates(task.optimizer)
            train_stats = train_one_epoch(task, ctx, epoch, scaler, use_amp, log)
            broadcast_buffers(task.model, ctx)
            task.model.eval()
            examples = _map_examples(log, cfg, ctx)
            metrics = task.validate(examples)
            task.end_epoch(train_stats)
            score = float(metrics[task.selection_key])
            improved = (getattr(task, "select_last", False) or best is None or epoch <= first_selectable
                        or score > best["score"])
            row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items()}, **lrs,
                   **{f"val_{k}": v for k, v in scalar_metrics(metrics).items()},
                   "seconds": round(time.time() - started, 2)}
            history.append(row)
            if improved:
                best = {"epoch": epoch + 1, "score": score, "metric": task.selection_key,
                        "metrics": scalar_metrics(metrics)}
            if ctx.is_main:
                state = {"kind": task.kind, "config": cfg.to_dict(), "epoch": epoch, "task": task.state_dict(),
                         "rng": rng_state(), "history": history, "best": best}
                save_checkpoint(state, run_dir / LAST)
                if improved:
                    save_checkpoint(state, run_dir / BEST)
                log.epoch(history)
                log.maps(examples.examples if examples is not None else [], epoch)
                burn_in = epoch < first_selectable and not getattr(task, "select_last", False)
                waiting = f", selection from epoch {first_selectable + 1}" if burn_in else ""
                print(f"epoch {epoch + 1}/{epochs}  loss {train_stats.get('loss', float('nan')):.4f}  "
                      f"val {task.selection_key} {score:.2f}  best {best['score']:.2f} (epoch {best['epoch']})"
                      f"{waiting}  {row['seconds']:.0f}s", file=sys.stderr, flush=True)
            barrier(ctx)
    finally:
        log.close()
    summary = {"best": best, "epochs": epochs, "last": history[-1] if history else None}
    if ctx.is_main:
        (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def run_training(cfg: Config, output: str | Path, resume: bool, overwrite: bool, command: CommandKeys,
                 make_task: Callable[[Config, DistContext], Task]) -> dict:
    """What both training commands do: join the process group, prepare the run directory, check
    that a resumed run keeps its config, seed, build the task and :func:`fit` it for the
    command's epochs; returns the summary (printed on rank 0)."""
    ctx = setup_distributed(cfg.device)
    try:
        run_dir = prepare_run_dir(output, resume, overwrite, create=ctx.is_main)
        state = None
        if resume:
            state = load_checkpoint(run_dir / LAST, kind=command.kind)
            check_resume(state["config"], cfg, command, str(run_dir / LAST))
        seed_everything(cfg.train.seed, ctx.rank)
        summary = fit(make_task(cfg, ctx), ctx, run_dir, cfg, value_of(cfg, command.epochs), state)
        if ctx.is_main:
            best = summary["best"]
            print(f"best {best['metric']} {best['score']:.2f} at epoch {best['epoch']}; checkpoints in {run_dir}",
                  file=sys.stderr)
        return summary
    finally:
        cleanup_distributed()
