"""F-CAM end to end on small synthetic data, over several seeds: on every seed the decoder's loss
falls and its maps localize the objects better than the CAM they were trained from (the paper's
claim, at CPU size).

One seed on one machine proves little: another CPU sums floats in another order and trains
another classifier. So the test trains one classifier and one decoder per seed and asserts what
held on every run measured for docs/recipe.md §6, with margins well inside that spread: with the
recipe's colour-filtered seeds (seeds 0-5, 1 thread, AMD EPYC) box gains of +14.2 to +26.7
MaxBoxAcc per seed, mask gains of +20.2 to +29.2 PxAP.
"""

from __future__ import annotations

import json
import statistics

import pytest
import yaml

from fcam.cli.eval import main as eval_main
from fcam.cli.train_cls import main as train_cls
from fcam.cli.train_decoder import main as train_decoder
from fcam.data import generate_synthetic

from conftest import tiny_config

SEEDS = (0, 1, 2)
MIN_BOX_GAIN = 0.0        # on every seed
MIN_MASK_GAIN = 0.0       # on every seed
MIN_MEAN_GAIN = 10.0      # mean over the seeds, boxes and masks each


def _gains(root, data, seed: int) -> dict[str, float]:
    """Train a classifier and a decoder with ``seed``; F-CAM's gains over CAM on boxes and masks."""
    # configs/synth.yaml at a smaller scale (docs/recipe.md §6).
    cfg = tiny_config(data, data={"resize_size": 72, "crop_size": 64, "eval_size": 64},
                      train={"epochs": 8, "batch_size": 8, "lr": 0.02, "lr_schedule": "cosine", "warmup_epochs": 1,
                             "selection": "last", "seed": seed},
                      fcam={"epochs": 4, "batch_size": 8, "n_seeds": 10, "bg_fraction": 0.1, "lr": 0.01,
                            "erode_size": 5, "seed_color_ratio": 2.0},
                      eval={"cam_curve_interval": 0.01})
    config = root / f"seed{seed}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cls, fcam = root / f"cls{seed}", root / f"fcam{seed}"
    assert train_cls(["--config", str(config), "--output", str(cls)]) == 0
    assert train_decoder(["--config", str(config), "--classifier", str(cls / "best.pt"), "--output", str(fcam)]) == 0
    rows = [json.loads(line) for line in (fcam / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"], (seed, [r["train_loss"] for r in rows])
    gains = {}
    for dataset, key in (("CUB", "MaxBoxAcc"), ("OpenImages", "PxAP")):
        out = root / f"eval{seed}_{dataset}"
        assert eval_main(["--checkpoint", str(cls / "best.pt"), "--decoder", str(fcam / "best.pt"),
                          "--method", "cam", "fcam", "--split", "test", "--output", str(out),
                          "--set", f"data.dataset={dataset}"]) == 0
        cam, ours = (json.loads((out / m / "metrics.json").read_text())[key] for m in ("cam", "fcam"))
        gains[key] = ours - cam
    return gains


@pytest.mark.slow
def test_fcam_beats_its_cam_on_every_seed(tmp_path):
    data = tmp_path / "data"
    generate_synthetic(data, seed=0, image_size=64, num_classes=3, num_train_per_class=80,
                       num_val_per_class=20, num_test_per_class=40, progress=False)
    gains = {seed: _gains(tmp_path, data, seed) for seed in SEEDS}
    masks = [g["PxAP"] for g in gains.values()]
    boxes = [g["MaxBoxAcc"] for g in gains.values()]
    assert min(boxes) > MIN_BOX_GAIN, gains
    assert min(masks) > MIN_MASK_GAIN, gains
    assert statistics.mean(boxes) > MIN_MEAN_GAIN and statistics.mean(masks) > MIN_MEAN_GAIN, gains
