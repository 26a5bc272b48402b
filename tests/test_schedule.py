"""The classifier's optimizer recipe: Nesterov SGD, the per-step learning-rate schedules (the
step decay at wsolevaluation's epochs, cosine, warmup) and their resume, the training loader's
last batch, the x10 group with a random init and the divergence warning."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from fcam.cli.train_cls import main as train_cls
from fcam.config import load_config
from fcam.engine.checkpoint import load_checkpoint
from fcam.engine.distributed import DistContext
from fcam.engine.loaders import split_metadata, train_loader
from fcam.engine.schedule import Schedule, StepwiseLR
from fcam.engine.tasks import STALL_EPOCHS, ClassifierTask, divergence_warning
from fcam.errors import FcamError

from conftest import tiny_config

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def config(synth_root, tmp_path, **train):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(synth_root, train=train)))
    return load_config(path)


def classifier_task(cfg) -> ClassifierTask:
    train_meta, val_meta = split_metadata(cfg, "train"), split_metadata(cfg, "val")
    return ClassifierTask(cfg, CPU, train_meta, val_meta, train_meta.num_classes)


def wsolevaluation_lrs(epochs: int, frequency: int) -> list[float]:
    """The learning rate of each epoch in wsolevaluation's main loop: ``adjust_learning_rate(epoch + 1)``
    before training epoch ``epoch + 1`` multiplies by 0.1 when that number is a multiple of the frequency."""
    lr, lrs = 1.0, []
    for epoch in range(epochs):
        if (epoch + 1) % frequency == 0:
            lr *= 0.1
        lrs.append(lr)
    return lrs


def test_step_schedule_decays_at_wsolevaluation_epochs():
    schedule = Schedule("step", steps_per_epoch=3, epochs=50, decay_epochs=15, decay_factor=0.1)
    per_epoch = [schedule.factor(3 * e + s) for e in range(50) for s in range(3)][::3]
    assert per_epoch == pytest.approx(wsolevaluation_lrs(50, 15))
    # 1-based epochs 1-14 at lr, 15-29 at lr x 0.1 (a StepLR stepped per epoch decays from epoch 16 on).
    assert per_epoch[13] == 1.0 and per_epoch[14] == pytest.approx(0.1) and per_epoch[29] == pytest.approx(0.01)
    # Every step of an epoch shares its factor.
    assert {schedule.factor(3 * 14 + s) for s in range(3)} == {per_epoch[14]}


def test_cosine_and_warmup_per_step(synth_root, tmp_path):
    cosine = Schedule("cosine", steps_per_epoch=5, epochs=4, warmup_steps=4)
    factors = [cosine.factor(step) for step in range(20)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear from lr / 4
    assert factors[4] == 1.0 and factors[12] == pytest.approx(0.5)  # cosine over the 16 steps after warmup
    assert all(a > b for a, b in zip(factors[4:], factors[5:])) and 0 < factors[-1] < 0.01
    # The warmup multiplies the step schedule too; its length may be a fraction of an epoch.
    cfg = config(synth_root, tmp_path, warmup_epochs=0.5, lr_decay_epochs=1).train
    step = Schedule.from_config(cfg, steps_per_epoch=6)
    assert step.warmup_steps == 3 and step.factor(0) == pytest.approx(0.1 / 3) and step.factor(2) == pytest.approx(0.1)
    with pytest.raises(FcamError, match="'train.warmup_epochs' .* shorter than the run"):
        Schedule.from_config(config(synth_root, tmp_path, warmup_epochs=2, epochs=2).train, steps_per_epoch=6)


def test_scheduler_state_resumes_the_same_curve():
    def setup():
        params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))]
        optimizer = torch.optim.SGD([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 1.0}],
                                    momentum=0.9, nesterov=True)
        return optimizer, StepwiseLR(optimizer, Schedule("cosine", steps_per_epoch=4, epochs=3, warmup_steps=2))

    full, full_sched = setup()
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in full.param_groups])
        full.step()
    first, first_sched = setup()
    for _ in range(5):
        first.step()
    resumed, resumed_sched = setup()
    resumed.load_state_dict(first.state_dict())
    resumed_sched.load_state_dict(first_sched.state_dict())
    for step in range(5, 12):
        assert [g["lr"] for g in resumed.param_groups] == pytest.approx(lrs[step])
        resumed.step()
    assert lrs[0] == pytest.approx([0.05, 0.5]) and lrs[1] == pytest.approx([0.1, 1.0])
    with pytest.raises(FcamError, match="older fcam"):
        resumed_sched.load_state_dict({"step_size": 15, "gamma": 0.1, "last_epoch": 3})


def test_classifier_optimizer_nesterov_groups_and_epoch_schedule(synth_root, tmp_path, capsys):
    cfg = config(synth_root, tmp_path, lr=0.1, lr_decay_epochs=2, new_layers_lr_mult=10.0)
    task = classifier_task(cfg)
    assert task.optimizer.defaults["nesterov"] is True
    # A random init: every layer is new, so no x10 group, and a note names the key.
    assert [g["lr"] for g in task.optimizer.param_groups] == pytest.approx([0.1, 0.1])
    err = capsys.readouterr().err
    assert "train.new_layers_lr_mult=10 is not applied with model.pretrained=none: every layer is new" in err
    # The learning rate of each epoch, the optimizer stepped once per batch: x0.1 from 1-based epoch 2.
    lrs = []
    for epoch in range(4):
        task.set_epoch(epoch)
        lrs.append(task.optimizer.param_groups[0]["lr"])
        for _ in range(len(task.train_loader)):
            task.optimizer.step()
        task.end_epoch({"loss": 1.0})
    assert lrs == pytest.approx([0.1 * f for f in wsolevaluation_lrs(4, 2)])
    # A file of weights (or imagenet) keeps the x10 group; Nesterov can be turned off.
    weights = tmp_path / "w.pt"
    torch.save(task.model.state_dict(), weights)
    cfg = load_config(None, ["model.pretrained=" + str(weights), "train.nesterov=false"], base=cfg)
    task = classifier_task(cfg)
    assert [g["lr"] for g in task.optimizer.param_groups] == pytest.approx([0.1, 1.0])
    assert task.optimizer.defaults["nesterov"] is False
    with pytest.raises(FcamError, match="'train.nesterov' .* momentum > 0"):
        classifier_task(load_config(None, ["train.momentum=0", "train.nesterov=true"], base=cfg))


@pytest.mark.parametrize("world_size, batch_size, batches", [
    (1, 7, [7, 7, 7, 3]),  # 24 images: the last partial batch is kept
    (1, 23, [23]),         # ... but never a batch of one image
    (1, 8, [8, 8, 8]),
    (2, 5, [5, 5, 2]),     # 12 images per rank
    (2, 11, [11]),
])
def test_train_loader_keeps_the_last_batch_unless_it_is_one_image(synth_root, tmp_path, world_size, batch_size,
                                                                  batches):
    cfg = config(synth_root, tmp_path)
    ctx = DistContext(rank=world_size - 1, world_size=world_size, device=torch.device("cpu"))
    loader = train_loader(cfg, split_metadata(cfg, "train"), ctx, batch_size)
    assert len(loader) == len(batches)
    if world_size == 1:
        assert [len(batch["label"]) for batch in loader] == batches


def test_divergence_warning_rules(synth_root, tmp_path):
    cfg = config(synth_root, tmp_path, lr=0.5)
    assert divergence_warning([2.1], 3, cfg) is None  # below 2 ln(3) = 2.197
    warning = divergence_warning([2.3], 3, cfg)
    assert "2 x ln(K) = 2.2" in warning and "train.lr=0.5 too high for a random init" in warning
    pretrained = load_config(None, ["model.pretrained=imagenet", "train.new_layers_lr_mult=10"], base=cfg)
    assert "new_layers_lr_mult" in divergence_warning([50.0], 3, pretrained)
    stalled = [1.0] + [1.2] * (STALL_EPOCHS - 1)
    assert "did not decrease over the first 3 epochs" in divergence_warning(stalled, 3, cfg)
    assert divergence_warning([1.0, 0.9, 0.8], 3, cfg) is None
    assert divergence_warning(stalled + [2.0], 3, cfg) is None  # said once, at epoch 3


def test_huge_learning_rate_warns_after_epoch_one(synth_root, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(synth_root, train={"epochs": 1, "lr": 100.0})))
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "run")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"above 2 x ln(K) = {2 * math.log(3):.3g}" in warnings[0]
    assert "train.lr=100 too high for a random init" in warnings[0]


def test_interrupted_cosine_warmup_run_resumes_to_the_same_end(synth_root, tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(synth_root, train={"lr_schedule": "cosine", "warmup_epochs": 0.5,
                                                                  "batch_size": 7})))
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "full")]) == 0

    def interrupt(ctx):
        raise FcamError("interrupted after epoch 1")

    monkeypatch.setattr("fcam.engine.trainer.barrier", interrupt)
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "cut")]) == 2
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "cut/last.pt")["epoch"] == 0
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "cut"), "--resume"]) == 0
    full, cut = (load_checkpoint(tmp_path / run / "last.pt")["task"] for run in ("full", "cut"))
    assert cut["scheduler"] == full["scheduler"] == {"steps": 8}  # 4 batches of 7, 7, 7, 3 per epoch
    assert all(torch.equal(cut["model"][k], full["model"][k]) for k in full["model"])
