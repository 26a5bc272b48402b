"""Runs that survive crashes and bad input: SIGKILL + --resume equals an uninterrupted run,
atomic checkpoints, a non-finite loss stops with its epoch and step, data errors are one line,
and evaluation streams (bounded memory over 2,000 maps)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fcam.cli.train_cls import main as train_cls
from fcam.config import Config
from fcam.engine.checkpoint import load_checkpoint, save_checkpoint
from fcam.engine.distributed import DistContext
from fcam.engine.trainer import NonFiniteLoss, fit, prepare_run_dir

from conftest import tiny_config


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(synth_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(synth_root, train={"epochs": 3})))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "fcam.cli.train_cls", "--config", str(cfg), "--output", str(killed)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "log.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert load_checkpoint(killed / "last.pt")["epoch"] < 2
    assert train_cls(["--config", str(cfg), "--output", str(killed), "--resume"]) == 0
    assert train_cls(["--config", str(cfg), "--output", str(tmp_path / "straight")]) == 0
    a = load_checkpoint(killed / "last.pt")
    b = load_checkpoint(tmp_path / "straight/last.pt")
    assert all(torch.equal(a["task"]["model"][k], b["task"]["model"][k]) for k in b["task"]["model"])
    assert a["history"] == [{**row, "seconds": a["history"][i]["seconds"]} for i, row in enumerate(b["history"])]


def test_kill_during_checkpoint_write_leaves_last_good_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"kind": "classifier", "epoch": 0, "payload": torch.zeros(10)}, path)
    writer = tmp_path / "writer.py"
    writer.write_text(
        "import sys, torch\n"
        "from fcam.engine.checkpoint import save_checkpoint\n"
        "big = torch.arange(30_000_000, dtype=torch.float32)\n"
        "print('ready', flush=True)\n"
        "epoch = 1\n"
        "while True:\n"
        "    save_checkpoint({'kind': 'classifier', 'epoch': epoch, 'payload': big}, sys.argv[1])\n"
        "    epoch += 1\n")
    proc = subprocess.Popen([sys.executable, str(writer), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # several 120 MB writes are under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(path)  # readable: either the first one or a complete later one
    assert state["kind"] == "classifier" and state["payload"].numel() in (10, 30_000_000)


class NaNTask:
    """A tiny task whose loss turns NaN at epoch 2, step 3."""

    kind = "classifier"
    selection_key = "score"

    def __init__(self) -> None:
        self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.train_loader = [{"x": torch.ones(4, 2)} for _ in range(5)]
        self.epoch = 0
        self.step = 0

    def losses(self, batch):
        self.step += 1
        loss = self.model(batch["x"]).pow(2).mean()
        if self.epoch == 1 and self.step == 3:
            loss = loss * float("nan")
        return {"loss": loss}

    def set_epoch(self, epoch):
        self.epoch, self.step = epoch, 0

    def end_epoch(self, train_stats):
        pass

    def validate(self, on_batch=None):
        return {"score": 1.0}

    def state_dict(self):
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path):
    run = prepare_run_dir(tmp_path / "run", resume=False, overwrite=False)
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    with pytest.raises(NonFiniteLoss, match="epoch 2, step 3"):
        fit(NaNTask(), ctx, run, Config(), epochs=3)
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 0  # the last good checkpoint, from epoch 1
    assert all(torch.isfinite(v).all() for v in state["task"]["model"].values())


def corrupt(synth_root: Path, tmp_path: Path, case: str) -> tuple[dict, str]:
    """A copy of the synthetic data with one defect; the config and the text the error must name."""
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    meta = root / "metadata/CUB/train"
    ids = (meta / "image_ids.txt").read_text().split()
    if case == "missing image":
        (root / "images/CUB" / ids[0]).unlink()
        return tiny_config(root), ids[0]
    if case == "unreadable image":
        (root / "images/CUB" / ids[0]).write_bytes(b"garbage")
        return tiny_config(root), ids[0]
    if case == "metadata lengths differ":
        lines = (meta / "class_labels.txt").read_text().splitlines()
        (meta / "class_labels.txt").write_text("\n".join(lines[:-1]))
        return tiny_config(root), "class_labels.txt"
    if case == "metadata ids differ":
        text = (meta / "image_sizes.txt").read_text().replace(ids[1], "not/an/image.png")
        (meta / "image_sizes.txt").write_text(text)
        return tiny_config(root), "image_sizes.txt"
    if case == "label out of range":
        return tiny_config(root, data={"num_classes": 2}), "class_labels.txt"
    if case == "box outside image":
        lines = (meta / "localization.txt").read_text().splitlines()
        image_id, x0, y0, x1, y1 = lines[0].split(",")
        lines[0] = ",".join([image_id, x0, y0, "5000", y1])
        (meta / "localization.txt").write_text("\n".join(lines))
        return tiny_config(root), "localization.txt"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["missing image", "unreadable image", "metadata lengths differ",
                                  "metadata ids differ", "label out of range", "box outside image"])
def test_bad_data_is_a_one_line_error(synth_root, tmp_path, capsys, case):
    cfg, must_name = corrupt(synth_root, tmp_path, case)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and must_name in err[0], err


def test_missing_image_read_in_a_worker_process_is_a_one_line_error(synth_root, tmp_path, capsys):
    cfg, image_id = corrupt(synth_root, tmp_path, "missing image")
    cfg["data"]["num_workers"] = 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_cls(["--config", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read image ") and image_id in err[0], err
    assert "worker" not in err[0] and "Traceback" not in err[0]


def test_eval_of_2000_maps_streams_under_2_gb(tmp_path):
    n, size = 2000, 224
    meta = tmp_path / "metadata/CUB/test"
    meta.mkdir(parents=True)
    ids = [f"c/{i:05d}.jpg" for i in range(n)]
    (meta / "image_ids.txt").write_text("\n".join(ids))
    (meta / "class_labels.txt").write_text("\n".join(f"{i},0" for i in ids))
    (meta / "image_sizes.txt").write_text("\n".join(f"{i},{size},{size}" for i in ids))
    (meta / "localization.txt").write_text("\n".join(f"{i},40,50,150,170" for i in ids))
    yy, xx = np.mgrid[:size, :size]
    maps = tmp_path / "maps/c"
    maps.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cx, cy = rng.integers(60, 160, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 40.0 ** 2))
        np.save(maps / f"{i:05d}.jpg.npy", (blob / blob.max()).astype(np.float64))
    # The peak RSS of the command alone: RUSAGE_CHILDREN of this pytest process would also count every
    # child an earlier test started, so a fresh process runs the command and reports its children's peak.
    command = [sys.executable, "-m", "fcam.cli.eval", "--scoremap-root", str(tmp_path / "maps"),
               "--metadata-root", str(tmp_path / "metadata"), "--dataset", "CUB", "--split", "test",
               "--num-workers", "1", "--output", str(tmp_path / "out")]
    measure = ("import resource, subprocess, sys; "
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
               "sys.stderr.write(code.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code.returncode)")
    result = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_kib = int(result.stdout.split()[-1])
    assert 0 < peak_kib < 2 * 1024 ** 2, f"peak RSS {peak_kib / 1024:.0f} MiB"
    assert json.loads((tmp_path / "out/metrics.json").read_text())["num_images"] == n
