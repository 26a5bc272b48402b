"""torchrun with 2 CPU processes (gloo): training runs, only rank 0 writes, and gathered metrics
equal a one-process evaluation of the same weights, on boxes and on masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fcam.cli.eval import main as eval_main


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def test_two_process_training_validates_like_one_process(box_config, tmp_path):
    run = tmp_path / "ddp"
    torchrun("fcam.cli.train_cls", "--config", str(box_config), "--set", "train.epochs=1", "train.batch_size=4",
             "--output", str(run))
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "log.jsonl", "summary.json"]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # one writer
    assert eval_main(["--checkpoint", str(run / "last.pt"), "--split", "val", "--output", str(tmp_path / "one")]) == 0
    one = metrics(tmp_path / "one/metrics.json")
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "cls_acc"):
        assert rows[0][f"val_{key}"] == one[key]


def test_two_process_eval_equals_one_process_on_boxes_and_masks(trained_classifier, trained_decoder, tmp_path):
    ckpt = str(trained_classifier / "best.pt")
    for dataset in ("CUB", "OpenImages"):
        args = ["--checkpoint", ckpt, "--decoder", str(trained_decoder / "best.pt"), "--method", "gradcampp", "fcam",
                "--split", "test", "--set", f"data.dataset={dataset}"]
        torchrun("fcam.cli.eval", *args, "--output", str(tmp_path / f"two_{dataset}"))
        assert eval_main([*args, "--output", str(tmp_path / f"one_{dataset}")]) == 0
        for method in ("gradcampp", "fcam"):
            two = metrics(tmp_path / f"two_{dataset}/{method}/metrics.json")
            one = metrics(tmp_path / f"one_{dataset}/{method}/metrics.json")
            assert two == one
            assert ("PxAP" in one) == (dataset == "OpenImages")
