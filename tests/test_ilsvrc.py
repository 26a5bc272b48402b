"""ILSVRC in wsolevaluation's layout: its metadata as it is (train without sizes or boxes, val
from ImageNetV2, test from ILSVRC2012 val, several boxes per image), its configs, and a short
run of the classifier on images laid out the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcam.cli.eval import main as eval_main
from fcam.cli.train_cls import main as train_cls
from fcam.config import load_config
from fcam.data import load_metadata
from fcam.errors import FcamError

ROOT = Path(__file__).resolve().parents[1]
SYNSETS = ("n01440764", "n01443537", "n01484850")


def ilsvrc_ids(split: str, label: int, k: int) -> str:
    """Image ids as wsolevaluation's metadata/ILSVRC writes them."""
    if split == "train":
        return f"train/{SYNSETS[label]}/{SYNSETS[label]}_{10026 + k}.JPEG"
    if split == "val":  # ImageNetV2 threshold-0.7, one folder per class index
        return f"val2/{label}/{k}.jpeg"
    return f"val/ILSVRC2012_val_{label * 100 + k + 1:08d}.JPEG"


def write_ilsvrc(root: Path, per_class: dict[str, int], size: tuple[int, int] | None = None,
                 label_offset: int = 0) -> Path:
    """Metadata (no trailing newline, as in the reference files) and, with ``size``, the images.

    Train has empty image_sizes.txt and localization.txt, as the real ILSVRC train split; val and
    test images have one box, and every third one a second box.
    """
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        lines: dict[str, list[str]] = {"image_ids": [], "class_labels": [], "image_sizes": [], "localization": []}
        for label in range(len(SYNSETS)):
            for k in range(count):
                image_id = ilsvrc_ids(split, label, k)
                width, height = size or (500, 375)
                lines["image_ids"].append(image_id)
                lines["class_labels"].append(f"{image_id},{label + label_offset}")
                if size is not None:
                    pixels = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
                    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
                    pixels[y0:y0 + height // 2, x0:x0 + width // 2] = (60 + 70 * label, 200, 120)
                    path = root / "images/ILSVRC" / image_id
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
                else:
                    x0, y0 = 10 * k, 5 * k
                if split == "train":
                    continue
                lines["image_sizes"].append(f"{image_id},{width},{height}")
                lines["localization"].append(f"{image_id},{x0},{y0},{x0 + width // 2 - 1},{y0 + height // 2 - 1}")
                if k % 3 == 0:
                    lines["localization"].append(f"{image_id},0,0,{width - 1},{height - 1}")
        folder = root / "metadata/ILSVRC" / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in lines.items():
            (folder / f"{name}.txt").write_text("\n".join(rows))
    return root


def test_ilsvrc_metadata_reads_as_wsolevaluation_writes_it(tmp_path):
    write_ilsvrc(tmp_path, {"train": 4, "val": 3, "test": 3}, label_offset=997)  # labels 997..999
    train, val, test = (load_metadata(tmp_path / "metadata", "ILSVRC", s) for s in ("train", "val", "test"))
    assert train.kind is None and train.sizes == {} and train.boxes is None
    assert train.image_ids[0] == "train/n01440764/n01440764_10026.JPEG" and train.num_classes == 1000
    assert (val.kind, test.kind) == ("box", "box")
    assert val.image_ids[:2] == ["val2/0/0.jpeg", "val2/0/1.jpeg"]
    assert test.image_ids[0] == "val/ILSVRC2012_val_00000001.JPEG"
    for meta in (val, test):
        assert sum(len(b) for b in meta.boxes.values()) == 9 + 3  # a second box on every third image
        assert meta.boxes[meta.image_ids[0]].shape == (2, 4) and meta.boxes[meta.image_ids[1]].shape == (1, 4)
        boxes = meta.gt_boxes(224)
        np.testing.assert_array_equal(boxes[0][1], [0, 0, int(499 * 224 / 500), int(374 * 224 / 375)])
    with pytest.raises(FcamError, match="no boxes or masks"):
        train.gt_boxes()


def test_ilsvrc_sizes_are_needed_by_boxes_only(tmp_path):
    write_ilsvrc(tmp_path, {"train": 2, "test": 2})
    (tmp_path / "metadata/ILSVRC/test/image_sizes.txt").write_text("")
    with pytest.raises(FcamError, match="image_sizes.txt: empty, but .*localization.txt has boxes"):
        load_metadata(tmp_path / "metadata", "ILSVRC", "test")
    (tmp_path / "metadata/ILSVRC/train/image_sizes.txt").write_text(
        "\n".join(f"{i},500,375" for i in load_metadata(tmp_path / "metadata", "ILSVRC", "train").image_ids))
    assert len(load_metadata(tmp_path / "metadata", "ILSVRC", "train").sizes) == 6  # sizes without boxes: fine


def test_ilsvrc_configs_share_the_protocol_schedule():
    configs = {b: load_config(ROOT / "configs" / f"ilsvrc_{b}.yaml") for b in ("resnet50", "vgg16", "inceptionv3")}
    for backbone, cfg in configs.items():
        assert cfg.data.dataset == "ILSVRC" and cfg.model.backbone == backbone
        assert cfg.data.num_workers == -1 and cfg.data.val_split == "val"
        assert (cfg.train.epochs, cfg.train.lr_decay_epochs, cfg.train.batch_size) == (10, 3, 32)
    assert len({cfg.train.lr for cfg in configs.values()}) == 3  # tuned per backbone


def test_ilsvrc_layout_trains_and_evaluates_with_the_shipped_config(tmp_path):
    write_ilsvrc(tmp_path, {"train": 6, "val": 2, "test": 2}, size=(40, 30))
    tiny = [f"data.root={tmp_path / 'images'}", f"data.metadata_root={tmp_path / 'metadata'}",
            "data.resize_size=40", "data.crop_size=32", "data.eval_size=32", "data.num_workers=0",
            "model.backbone=resnet18", "model.pretrained=none", "train.epochs=1", "train.batch_size=8",
            "train.eval_batch_size=8", "train.lr=0.01", "eval.cam_curve_interval=0.01", "device=cpu"]
    run = tmp_path / "cls"
    assert train_cls(["--config", str(ROOT / "configs/ilsvrc_resnet50.yaml"), "--set", *tiny,
                      "--output", str(run)]) == 0
    assert "val_MaxBoxAcc" in json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert eval_main(["--checkpoint", str(run / "best.pt"), "--split", "test", "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert 0 <= metrics["MaxBoxAccV2"] <= 100 and 0 <= metrics["top1_loc"] <= metrics["MaxBoxAcc"]
    # Evaluating the train split, which has no boxes, is refused up front.
    assert eval_main(["--checkpoint", str(run / "best.pt"), "--split", "train", "--output", str(tmp_path / "e2")]) == 2
