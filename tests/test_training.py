"""The shared training loop through both commands: checkpoints, logs, resume, model selection,
errors naming the file or key, and evaluation of trained models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fcam.cli.eval import main as eval_main
from fcam.cli.train_cls import main as train_cls
from fcam.cli.train_decoder import main as train_decoder
from fcam.data import load_metadata
from fcam.config import Config
from fcam.engine.checkpoint import load_checkpoint
from fcam.engine.distributed import DistContext
from fcam.engine.tasks import selection_metric
from fcam.engine.trainer import fit, prepare_run_dir

from conftest import tiny_config


def log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_classifier_run_writes_everything(trained_classifier):
    run = trained_classifier
    for name in ("last.pt", "best.pt", "log.jsonl", "config.yaml", "summary.json"):
        assert (run / name).is_file(), name
    rows = log_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all("val_MaxBoxAcc" in r and "train_loss" in r for r in rows)
    state = load_checkpoint(run / "last.pt", kind="classifier")
    assert state["epoch"] == 1 and {"model", "optimizer", "scheduler"} <= set(state["task"])
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    best = load_checkpoint(run / "best.pt")
    assert best["best"]["score"] == max(r["val_MaxBoxAcc"] for r in rows)
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["backbone"] == "resnet18"


def test_resume_equals_uninterrupted_run(synth_root, tmp_path, trained_classifier, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(synth_root, train={"epochs": 1}))
    assert train_cls(["--config", str(cfg), "--output", str(tmp_path / "r")]) == 0
    assert train_cls(["--config", str(cfg), "--set", "train.epochs=2", "--output", str(tmp_path / "r"),
                      "--resume"]) == 0
    resumed = load_checkpoint(tmp_path / "r/last.pt")["task"]["model"]
    full = load_checkpoint(trained_classifier / "last.pt")["task"]["model"]
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    assert [r["val_MaxBoxAcc"] for r in log_rows(tmp_path / "r")] == \
           [r["val_MaxBoxAcc"] for r in log_rows(trained_classifier)]


def test_model_selection_rules(synth_root, tmp_path, trained_classifier):
    # 'val' (the protocol's): best.pt is the first epoch with the highest validation MaxBoxAcc.
    scores = [r["val_MaxBoxAcc"] for r in log_rows(trained_classifier)]
    assert load_checkpoint(trained_classifier / "best.pt")["epoch"] == scores.index(max(scores))
    # 'last': best.pt is the last epoch, whatever validated best.
    cfg = write_config(tmp_path / "c.yaml", tiny_config(synth_root, train={"epochs": 3, "selection": "last"}))
    assert train_cls(["--config", str(cfg), "--output", str(tmp_path / "r")]) == 0
    best, last = (load_checkpoint(tmp_path / f"r/{name}.pt") for name in ("best", "last"))
    assert best["epoch"] == last["epoch"] == 2 and best["best"]["epoch"] == 3
    assert all(torch.equal(best["task"]["model"][k], v) for k, v in last["task"]["model"].items())


def test_decoder_selection_rules(synth_root, tmp_path, trained_classifier, trained_decoder):
    # 'val' (the default): the first decoder epoch with the highest validation MaxBoxAcc.
    scores = [r["val_MaxBoxAcc"] for r in log_rows(trained_decoder)]
    assert load_checkpoint(trained_decoder / "best.pt")["epoch"] == scores.index(max(scores))
    # 'last': the last decoder epoch.
    cfg = write_config(tmp_path / "c.yaml", tiny_config(synth_root, fcam={"epochs": 3, "selection": "last"}))
    assert train_decoder(["--config", str(cfg), "--classifier", str(trained_classifier / "best.pt"),
                          "--output", str(tmp_path / "d")]) == 0
    best, last = (load_checkpoint(tmp_path / f"d/{name}.pt") for name in ("best", "last"))
    assert best["epoch"] == last["epoch"] == 2 and best["best"]["epoch"] == 3
    assert all(torch.equal(best["task"]["model"][k], v) for k, v in last["task"]["model"].items())
    # 'val_v2' with a burn-in of half the epochs: the first epoch with the highest validation
    # MaxBoxAccV2 among epochs 2-3 of 3 (through the config, the command and the loop).
    cfg = write_config(tmp_path / "v2.yaml", tiny_config(synth_root, fcam={"epochs": 3, "selection": "val_v2",
                                                                           "selection_burn_in": 0.5}))
    assert train_decoder(["--config", str(cfg), "--classifier", str(trained_classifier / "best.pt"),
                          "--output", str(tmp_path / "v2")]) == 0
    scores = [r["val_MaxBoxAccV2"] for r in log_rows(tmp_path / "v2")][1:]
    best = load_checkpoint(tmp_path / "v2/best.pt")
    assert best["best"]["metric"] == "MaxBoxAccV2" and best["best"]["score"] == max(scores)
    assert best["epoch"] == 1 + scores.index(max(scores))


class ScriptedTask:
    """A tiny task whose validation scores are given, to test the selection rules of the loop."""

    kind = "classifier"
    selection_key = "score"

    def __init__(self, scores: list[float], burn_in: float = 0.0, last: bool = False) -> None:
        self.scores, self.selection_burn_in, self.select_last = scores, burn_in, last
        self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.train_loader = [{"x": torch.ones(4, 2)}]
        self.epoch = 0

    def losses(self, batch):
        return {"loss": self.model(batch["x"]).pow(2).mean()}

    def set_epoch(self, epoch):
        self.epoch = epoch

    def end_epoch(self, train_stats):
        pass

    def validate(self, on_batch=None):
        return {"score": self.scores[self.epoch]}

    def state_dict(self):
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])


@pytest.mark.parametrize("burn_in, last, chosen", [
    (0.0, False, 1),   # the paper's rule: the first epoch with the best score
    (0.4, False, 3),   # epochs 1-2 cannot be chosen: epoch 3 starts the selection, epoch 4 does not beat it
    (0.6, False, 4),   # epochs 1-3 cannot be chosen
    (0.8, False, 5),   # only the last one can
    (0.4, True, 5),    # 'last' whatever the burn-in
])
def test_selection_burn_in(tmp_path, capsys, burn_in, last, chosen):
    scores = [9.0, 1.0, 5.0, 5.0, 3.0]
    run = prepare_run_dir(tmp_path / "run", resume=False, overwrite=False)
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    summary = fit(ScriptedTask(scores, burn_in, last), ctx, run, Config(), epochs=len(scores))
    assert summary["best"]["epoch"] == chosen and summary["best"]["score"] == scores[chosen - 1]
    assert load_checkpoint(run / "best.pt")["epoch"] == chosen - 1
    # Each epoch line of the burn-in says from which epoch the selection starts.
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    waiting = [f"selection from epoch {chosen}" in line for line in lines]
    assert waiting == [not last and burn_in > 0 and i < chosen - 1 for i in range(len(scores))]


def test_selection_metric_per_rule_and_data_kind(synth_root):
    boxes = load_metadata(synth_root / "metadata", "CUB", "val")
    masks = load_metadata(synth_root / "metadata", "OpenImages", "val")
    assert [selection_metric(boxes, rule) for rule in ("val", "val_v2", "last")] == ["MaxBoxAcc", "MaxBoxAccV2",
                                                                                      "MaxBoxAcc"]
    assert {selection_metric(masks, rule) for rule in ("val", "val_v2", "last")} == {"PxAP"}


def test_output_holding_a_run_needs_resume_or_overwrite(box_config, trained_classifier, tmp_path, capsys):
    run = tmp_path / "copy"
    run.mkdir()
    (run / "last.pt").write_bytes((trained_classifier / "last.pt").read_bytes())
    (run / "summary.json").write_text("{}")
    assert train_cls(["--config", str(box_config), "--output", str(run)]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert train_cls(["--config", str(box_config), "--output", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "unknown config key 'train.lrr'"),
    ("train.epochs=two", "'train.epochs' expects int"),
    ("model.backbone=resnet34", "'model.backbone' must be one of"),
])
def test_bad_config_is_one_line_error(box_config, tmp_path, capsys, override, message):
    assert train_cls(["--config", str(box_config), "--set", override, "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_decoder_run_and_its_errors(box_config, trained_classifier, trained_decoder, tmp_path, capsys):
    rows = log_rows(trained_decoder)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all({"train_pce", "train_crf", "train_size", "val_MaxBoxAcc"} <= set(r) for r in rows)
    state = load_checkpoint(trained_decoder / "last.pt", kind="fcam")
    assert state["task"]["elb"]["t"] == pytest.approx(1.01 ** 2)
    # The classifier inside the F-CAM checkpoint is the frozen one it was trained on.
    classifier = load_checkpoint(trained_classifier / "best.pt")["task"]["model"]
    assert all(torch.equal(state["task"]["model"][f"classifier.{k}"], v) for k, v in classifier.items())
    # --classifier must be a classifier checkpoint of the configured backbone.
    args = ["--config", str(box_config), "--output", str(tmp_path / "d")]
    assert train_decoder([*args, "--classifier", str(trained_decoder / "best.pt")]) == 2
    assert "expected a 'classifier' checkpoint" in capsys.readouterr().err
    assert train_decoder([*args, "--classifier", str(trained_classifier / "best.pt"),
                          "--set", "model.backbone=vgg16"]) == 2
    assert "is a resnet18 classifier" in capsys.readouterr().err
    not_ckpt = tmp_path / "junk.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    assert train_decoder([*args, "--classifier", str(not_ckpt)]) == 2
    assert "junk.pt" in capsys.readouterr().err


def test_decoder_seed_colour_filter_is_wired_to_its_images(box_config, trained_classifier, trained_decoder,
                                                          tmp_path):
    # The same run as trained_decoder's first epoch (same data order and seed draws) but with the
    # colour filter on: the sampler gets the training crops, removes seed pixels, and the loss moves.
    out = tmp_path / "color"
    assert train_decoder(["--config", str(box_config), "--classifier", str(trained_classifier / "best.pt"),
                          "--output", str(out), "--set", "fcam.epochs=1", "fcam.seed_color_ratio=2"]) == 0
    filtered, plain = log_rows(out)[0], log_rows(trained_decoder)[0]
    assert yaml.safe_load((out / "config.yaml").read_text())["fcam"]["seed_color_ratio"] == 2.0
    assert filtered["train_pce"] != plain["train_pce"]


def test_eval_of_trained_models_writes_reports_and_figures(trained_classifier, trained_decoder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(trained_classifier / "best.pt"), "--decoder",
                      str(trained_decoder / "best.pt"), "--method", "cam", "layercam", "fcam", "--split", "test",
                      "--save-scoremaps", "--visualize", "2", "--output", str(out)]) == 0
    for method in ("cam", "layercam", "fcam"):
        metrics = json.loads((out / method / "metrics.json").read_text())
        assert {"MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "top5_loc", "cls_acc"} <= set(metrics)
        assert (out / method / "examples.png").stat().st_size > 0
        assert len(list((out / method / "scoremaps").rglob("*.npy"))) == 9
    assert (out / "threshold_sensitivity.png").is_file() and (out / "histograms.png").is_file()
    # Saved maps scored again by the saved-maps path give the same numbers.
    capsys.readouterr()
    synth = yaml.safe_load((trained_classifier / "config.yaml").read_text())["data"]["metadata_root"]
    assert eval_main(["--scoremap-root", str(out / "fcam/scoremaps"), "--metadata-root", synth, "--dataset", "CUB",
                      "--split", "test", "--eval-size", "32", "--cam-curve-interval", "0.01", "--num-workers", "0",
                      "--output", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again/metrics.json").read_text())
    first = json.loads((out / "fcam/metrics.json").read_text())
    assert again["MaxBoxAcc"] == first["MaxBoxAcc"] and again["MaxBoxAccV2"] == first["MaxBoxAccV2"]


def test_eval_with_a_mask_cache_gives_the_same_pxap(trained_classifier, tmp_path):
    cache = tmp_path / "cache"
    base = ["--checkpoint", str(trained_classifier / "best.pt"), "--method", "cam", "--split", "test"]
    scores = []
    for name, extra in (("plain", []), ("cold", [f"eval.mask_cache={cache}"]), ("warm", [f"eval.mask_cache={cache}"])):
        assert eval_main([*base, "--output", str(tmp_path / name), "--set", "data.dataset=OpenImages", *extra]) == 0
        scores.append(json.loads((tmp_path / name / "metrics.json").read_text())["PxAP"])
    assert scores[0] == scores[1] == scores[2]
    assert len(list(cache.rglob("*.bin"))) == 9  # one entry per test image
