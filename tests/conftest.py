"""Shared fixtures: a tiny synthetic dataset, a config for it and trained tiny models.

Everything is CPU-sized (48 px images, ResNet18 at 32 px crops, a few epochs) so the whole
suite runs in minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fcam.data import generate_synthetic


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, seed=3, image_size=48, num_classes=3, num_train_per_class=8,
                       num_val_per_class=3, num_test_per_class=3, two_object_fraction=0.2, progress=False)
    return root


def tiny_config(synth_root: Path, dataset: str = "CUB", **sections) -> dict:
    """A config dict for fast CPU runs on the synthetic data; ``sections`` update it."""
    cfg = {
        "data": {"dataset": dataset, "root": str(synth_root / "images"),
                 "metadata_root": str(synth_root / "metadata"), "mask_root": str(synth_root / "masks"),
                 "resize_size": 40, "crop_size": 32, "eval_size": 32, "num_workers": 0},
        "model": {"backbone": "resnet18", "pretrained": "none"},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "new_layers_lr_mult": 1.0, "lr_decay_epochs": 5,
                  "eval_batch_size": 16, "seed": 1},
        "eval": {"cam_curve_interval": 0.01},
        "fcam": {"epochs": 2, "batch_size": 8, "n_seeds": 2, "lr": 0.01},
        "device": "cpu",
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


@pytest.fixture(scope="session")
def box_config(synth_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "box.yaml"
    path.write_text(yaml.safe_dump(tiny_config(synth_root)))
    return path


@pytest.fixture(scope="session")
def trained_classifier(box_config, tmp_path_factory) -> Path:
    """A 2-epoch classifier run (its folder)."""
    from fcam.cli.train_cls import main

    run = tmp_path_factory.mktemp("runs") / "cls"
    assert main(["--config", str(box_config), "--output", str(run)]) == 0
    return run


@pytest.fixture(scope="session")
def trained_decoder(box_config, trained_classifier, tmp_path_factory) -> Path:
    """A 2-epoch F-CAM decoder run on top of ``trained_classifier`` (its folder)."""
    from fcam.cli.train_decoder import main

    run = tmp_path_factory.mktemp("runs") / "fcam"
    assert main(["--config", str(box_config), "--classifier", str(trained_classifier / "best.pt"),
                 "--output", str(run)]) == 0
    return run
