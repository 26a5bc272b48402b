"""A run's logs: per-step rows, learning rates in the epoch rows, consistent logs after --resume,
TensorBoard event files that TensorBoard reads back, and what a training command warns or refuses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from fcam.cli.train_cls import main as train_cls
from fcam.cli.train_decoder import main as train_decoder
from fcam.engine.run_log import open_tensorboard, read_rows
from fcam.errors import FcamError

from conftest import tiny_config

# The tiny synthetic train split: 3 classes x 8 images, batch 8 -> 3 steps per epoch.
STEPS_PER_EPOCH = 3


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def without_speed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("img_per_s", "seconds")} for row in rows]


def test_step_rows_and_lr_and_resume_appends_consistently(synth_root, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(synth_root, train={"epochs": 2}, log={"every_n_steps": 1}))
    straight = tmp_path / "straight"
    assert train_cls(["--config", str(cfg), "--output", str(straight)]) == 0
    rows = read_rows(straight / "steps.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [r["epoch"] for r in rows] == [1] * STEPS_PER_EPOCH + [2] * STEPS_PER_EPOCH
    assert all({"loss", "lr_0", "lr_1", "img_per_s"} <= set(r) for r in rows)
    # From scratch (new_layers_lr_mult 1): both groups at lr.
    assert all(r["lr_1"] == pytest.approx(r["lr_0"]) and r["img_per_s"] > 0 for r in rows)
    epochs = read_rows(straight / "log.jsonl")
    assert [r["lr_0"] for r in epochs] == [0.01, 0.01]

    # Interrupted after epoch 1, with rows of a half-done epoch 2 left behind (as a kill leaves them).
    resumed = tmp_path / "resumed"
    assert train_cls(["--config", str(cfg), "--set", "train.epochs=1", "--output", str(resumed)]) == 0
    with open(resumed / "steps.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 2, "step": 4, "loss": 123.0}) + "\n")
    assert train_cls(["--config", str(cfg), "--output", str(resumed), "--resume"]) == 0
    assert without_speed(read_rows(resumed / "steps.jsonl")) == without_speed(rows)
    assert without_speed(read_rows(resumed / "log.jsonl")) == without_speed(epochs)


def test_tensorboard_event_files_read_back(box_config, trained_classifier, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "fcam"
    assert train_decoder(["--config", str(box_config), "--classifier", str(trained_classifier / "best.pt"),
                          "--set", "fcam.epochs=1", "log.tensorboard=true", "log.every_n_steps=1",
                          "log.tensorboard_images=2", "--output", str(run)]) == 0
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"step/loss", "step/pce", "step/crf", "step/size", "step/lr_0", "step/img_per_s", "train/loss",
            "lr/0", "val/MaxBoxAcc"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("step/loss")] == [1, 2, 3]
    logged = read_rows(run / "log.jsonl")[0]
    assert events.Scalars("val/MaxBoxAcc")[0].value == pytest.approx(logged["val_MaxBoxAcc"])
    assert sorted(tags["images"]) == ["val_maps/image_0", "val_maps/image_1"]
    image = events.Images("val_maps/image_0")[0]
    assert (image.width, image.height) == (32, 32) and image.step == STEPS_PER_EPOCH


def test_tensorboard_without_the_package_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(FcamError, match=r"pip install 'fcam\[tensorboard\]'"):
        open_tensorboard(tmp_path, None)


def test_resume_refuses_a_changed_config_but_takes_the_epochs(synth_root, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(synth_root, train={"epochs": 1}))
    run = tmp_path / "run"
    assert train_cls(["--config", str(cfg), "--output", str(run)]) == 0
    capsys.readouterr()
    assert train_cls(["--config", str(cfg), "--output", str(run), "--resume",
                      "--set", "train.lr=0.02", "cam.method=gradcam", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --resume: the config differs"), err
    assert "train.lr: 0.01 -> 0.02" in err[0] and "cam.method: 'cam' -> 'gradcam'" in err[0]
    assert "train.epochs" not in err[0].split("(")[1].split(")")[0]
    assert train_cls(["--config", str(cfg), "--output", str(run), "--resume",
                      "--set", "train.epochs=2", "data.num_workers=1", "log.every_n_steps=2"]) == 0
    assert [r["epoch"] for r in read_rows(run / "log.jsonl")] == [1, 2]


def test_ignored_overrides_warn_in_one_line(box_config, tmp_path, capsys):
    missing = str(tmp_path / "missing.pt")
    assert train_decoder(["--config", str(box_config), "--classifier", missing, "--output", str(tmp_path / "d"),
                          "--set", "train.epochs=5", "train.lr_decay_epochs=2", "train.seed=3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "warning: --set train.epochs is ignored by fcam-train-decoder: it reads fcam.epochs"
    assert err[1].startswith("warning: --set train.lr_decay_epochs is ignored by fcam-train-decoder: "
                             "it reads no train.* key but train.seed")
    assert err[2].startswith("error: checkpoint not found") and len(err) == 3
    assert train_cls(["--config", str(box_config), "--output", str(tmp_path / "c"),
                      "--set", "fcam.epochs=3", "fcam.crf_weight=0", "data.dataset=ILSVRC"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["warning: --set fcam.epochs is ignored by fcam-train-cls: it reads train.epochs",
                       "warning: --set fcam.crf_weight is ignored by fcam-train-cls: it reads no fcam.* key"]
