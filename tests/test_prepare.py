"""fcam-prepare: your own images in class folders + a CSV of boxes (or mask PNGs) converted to
the wsolevaluation layout, every bad input named, and a dataset of another name trained end to
end (classifier, F-CAM decoder, evaluation) from the converter's output."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fcam.cli.eval import main as eval_main
from fcam.cli.prepare import main as prepare_main
from fcam.cli.train_cls import main as train_cls
from fcam.cli.train_decoder import main as train_decoder
from fcam.data import load_metadata, prepare_dataset
from fcam.errors import FcamError

from conftest import tiny_config

CLASSES = ("disc", "square", "stripe")  # folder names; labels 0, 1, 2 in sorted order
PER_CLASS = 10


def draw(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """A 36-48 px photo-like image (noisy gradient) holding one object of class ``label``, and its mask."""
    height, width = rng.integers(36, 49, 2)
    yy, xx = np.mgrid[:height, :width]
    background = 60 + 40 * np.sin(xx / 7.0 + rng.uniform(0, 6))[..., None] + rng.normal(0, 12, (height, width, 3))
    h, w = rng.integers(height // 3, height - 4), rng.integers(width // 3, width - 4)
    y0, x0 = rng.integers(0, height - h), rng.integers(0, width - w)
    inside = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
    if label == 0:
        inside &= ((yy - y0 - h / 2) / (h / 2)) ** 2 + ((xx - x0 - w / 2) / (w / 2)) ** 2 <= 1
    elif label == 2:
        inside &= (xx - x0) % 6 < 3
    colour = np.array([200, 70, 40]) if label != 1 else np.array([40, 180, 200])
    image = np.where(inside[..., None], colour + rng.normal(0, 10, 3), background)
    return np.clip(image, 0, 255).astype(np.uint8), inside


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """``images/<class>/<name>`` (JPEG, some PNG), ``boxes.csv`` (two boxes on some images),
    ``masks/<class>/<name>.png`` with an ignore mask on some images, and ``masks.csv``."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(7)
    boxes, masks = [["image", "x0", "y0", "x1", "y1"]], [["image", "mask", "ignore"]]
    for label, name in enumerate(CLASSES):
        for k in range(PER_CLASS):
            image, mask = draw(rng, label)
            suffix = ".png" if k % 4 == 0 else ".jpg"
            image_id = f"{name}/{name}_{k:03d}{suffix}"
            (root / "images" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "images" / image_id, quality=90)
            boxes.append([image_id, *box_of(mask)])
            if k % 3 == 0:  # a second object's box: several rows for one image
                boxes.append([image_id, 0, 0, 3, 3])
            (root / "masks" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / name / f"{name}_{k:03d}.png")
            ignore = ""
            if k % 2 == 0:
                ignore = f"masks/{name}/{name}_{k:03d}_ignore.png"
                border = np.zeros_like(mask)
                border[:2] = True
                Image.fromarray(border.astype(np.uint8) * 255).save(root / ignore)
            masks.append([image_id, f"masks/{name}/{name}_{k:03d}.png", ignore])
    for name, rows in (("boxes.csv", boxes), ("masks.csv", masks)):
        with (root / name).open("w", newline="") as file:
            csv.writer(file).writerows(rows)
    return root


def read(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_boxes_are_converted_to_the_wsolevaluation_layout(own_data, tmp_path):
    summary = prepare_dataset(own_data / "images", tmp_path, "Shapes", boxes=own_data / "boxes.csv",
                              fractions=(0.6, 0.2, 0.2), seed=3)
    assert summary["train"] == {"images": 18, "classes": 3, "annotations": 0}
    assert summary["val"]["images"] == summary["test"]["images"] == 6
    assert read(tmp_path / "metadata/Shapes/class_names.txt") == ["0,disc", "1,square", "2,stripe"]
    boxes: dict[str, list[list[int]]] = {}
    for row in csv.DictReader((own_data / "boxes.csv").open()):
        boxes.setdefault(row["image"], []).append([int(row[k]) for k in ("x0", "y0", "x1", "y1")])
    seen = []
    for split in ("train", "val", "test"):
        meta = load_metadata(tmp_path / "metadata", "Shapes", split)
        assert meta.kind == (None if split == "train" else "box")
        assert sorted(meta.labels) == sorted(CLASSES.index(i.split("/")[0]) for i in meta.image_ids)
        for image_id in meta.image_ids:
            copied = tmp_path / "images/Shapes" / image_id
            assert copied.read_bytes() == (own_data / "images" / image_id).read_bytes()
            assert meta.sizes[image_id] == Image.open(copied).size
        if split != "train":
            assert {image_id.split("/")[0] for image_id in meta.image_ids} == set(CLASSES)  # every class
            for image_id in meta.image_ids:
                np.testing.assert_array_equal(meta.boxes[image_id], boxes[image_id])
        seen += meta.image_ids
    assert sorted(seen) == sorted(boxes) and len(seen) == len(set(seen))


def test_splits_are_reproducible_and_follow_the_seed(own_data, tmp_path):
    def draw_splits(out: Path, seed: int) -> dict[str, list[str]]:
        prepare_dataset(own_data / "images", out, "S", boxes=own_data / "boxes.csv", seed=seed, link="symlink")
        return {split: read(out / "metadata/S" / split / "image_ids.txt") for split in ("train", "val", "test")}

    first, again, other = draw_splits(tmp_path / "a", 1), draw_splits(tmp_path / "b", 1), draw_splits(tmp_path / "c", 2)
    assert first == again and first["test"] != other["test"]
    # Default fractions 0.7 / 0.15 / 0.15 of 10 images per class: 2 val, 2 test (rounded), 6 train.
    assert [len(first[s]) for s in ("train", "val", "test")] == [18, 6, 6]
    assert (tmp_path / "a/images/S" / first["val"][0]).is_symlink()


def test_given_splits_and_hardlinks(own_data, tmp_path):
    ids = sorted(p.relative_to(own_data / "images").as_posix() for p in (own_data / "images").rglob("*.*"))
    splits = tmp_path / "splits.csv"
    splits.write_text("image,split\n" + "".join(f"{i},{'trainval' if n % 3 else 'heldout'}\n" for n, i in enumerate(ids)))
    summary = prepare_dataset(own_data / "images", tmp_path / "out", "G", boxes=own_data / "boxes.csv",
                              splits=splits, link="hardlink")
    assert set(summary) == {"trainval", "heldout"} and summary["heldout"]["images"] == len(ids[::3])
    assert read(tmp_path / "out/metadata/G/heldout/image_ids.txt") == ids[::3]
    assert (tmp_path / "out/images/G" / ids[0]).stat().st_nlink == 2


def test_masks_from_a_csv_or_a_folder_are_written_binary(own_data, tmp_path):
    prepare_dataset(own_data / "images", tmp_path / "csv", "M", masks=own_data / "masks.csv", seed=5)
    prepare_dataset(own_data / "images", tmp_path / "dir", "M", masks=own_data / "masks", seed=5)
    for out in ("csv", "dir"):
        meta = load_metadata(tmp_path / out / "metadata", "M", "test")
        assert meta.kind == "mask"
        for image_id in meta.image_ids:
            (mask_path,), ignore = meta.masks[image_id]
            name = image_id.split("/")[0]
            stem = Path(image_id).with_suffix("").name
            written = np.asarray(Image.open(tmp_path / out / "masks/M" / mask_path))
            source = np.asarray(Image.open(own_data / "masks" / name / f"{stem}.png"))
            np.testing.assert_array_equal(written, np.where(source > 0, 255, 0))
            has_ignore = (own_data / "masks" / name / f"{stem}_ignore.png").is_file()
            assert (ignore is not None) == has_ignore and (ignore is None or (tmp_path / out / "masks/M" / ignore).is_file())
    assert read(tmp_path / "csv/metadata/M/test/localization.txt") == read(tmp_path / "dir/metadata/M/test/localization.txt")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def copy_images(own_data: Path, target: Path) -> Path:
    for source in (own_data / "images").rglob("*.*"):
        destination = target / source.relative_to(own_data / "images")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(source.read_bytes())
    return target


BOX_ROW = "disc/disc_001.jpg"


@pytest.mark.parametrize("csv_text, words", [
    ("file,x0,y0,x1,y1\n", "boxes.csv:1: header must be 'image,x0,y0,x1,y1', got 'file,x0,y0,x1,y1'"),
    ("", "boxes.csv: empty"),
    (f"image,x0,y0,x1,y1\n{BOX_ROW},1,2,3\n", "boxes.csv:2: 4 fields"),
    ("image,x0,y0,x1,y1\ndisc/nope.jpg,1,2,3,4\n", "boxes.csv:2: missing image 'disc/nope.jpg'"),
    ("image,x0,y0,x1,y1\ncat/disc_001.jpg,1,2,3,4\n", "boxes.csv:2: image 'cat/disc_001.jpg': unknown class 'cat'"),
    (f"image,x0,y0,x1,y1\n{BOX_ROW},1,2,3,4\n{BOX_ROW},1,2,3,99\n", "boxes.csv:3: box 1,2,3,99 is outside the"),
    (f"image,x0,y0,x1,y1\n{BOX_ROW},5,2,3,4\n", "need 0 <= x0 <= x1"),
    (f"image,x0,y0,x1,y1\n{BOX_ROW},1.5,2,3,4\n", "boxes.csv:2: x0 must be a non-negative integer pixel coordinate, got '1.5'"),
])
def test_bad_box_csv_names_file_line_and_value(own_data, tmp_path, csv_text, words):
    boxes = write(tmp_path / "boxes.csv", csv_text)
    with pytest.raises(FcamError) as error:
        prepare_dataset(own_data / "images", tmp_path / "out", "X", boxes=boxes)
    assert words in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing written before the input is valid


@pytest.mark.parametrize("case, words", [
    ("duplicate", "splits.csv:4: duplicate image 'disc/disc_001.jpg' (first at line 3)"),
    ("unlisted", "image(s) under --images are in no split"),
    ("bad name", "splits.csv:2: split 'a/b' must be a folder name"),
    ("test without boxes", "split 'test': 1 image(s) without boxes or masks, e.g. 'disc/disc_002.jpg'"),
])
def test_bad_splits_are_named(own_data, tmp_path, case, words):
    ids = sorted(p.relative_to(own_data / "images").as_posix() for p in (own_data / "images").rglob("*.*"))
    rows = [[i, "train"] for i in ids]
    boxes = own_data / "boxes.csv"
    if case == "duplicate":
        rows.insert(1, [ids[1], "test"])
    elif case == "unlisted":
        rows.pop()
    elif case == "bad name":
        rows[0][1] = "a/b"
    else:
        rows[2][1] = "test"
        boxes = write(tmp_path / "boxes.csv", "image,x0,y0,x1,y1\n" + f"{ids[0]},1,1,2,2\n")
    splits = write(tmp_path / "splits.csv", "image,split\n" + "".join(f"{i},{s}\n" for i, s in rows))
    with pytest.raises(FcamError, match=words.replace("(", r"\(").replace(")", r"\)")):
        prepare_dataset(own_data / "images", tmp_path / "out", "X", boxes=boxes, splits=splits)


def test_bad_fractions_and_too_few_annotations(own_data, tmp_path):
    for fractions in ((0.5, 0.3, 0.3), (1.0, 0.0, 0.0), (0.8, -0.1, 0.3)):
        with pytest.raises(FcamError, match="--fractions: expected three numbers in"):
            prepare_dataset(own_data / "images", tmp_path / "o", "X", boxes=own_data / "boxes.csv", fractions=fractions)
    few = write(tmp_path / "few.csv", "image,x0,y0,x1,y1\n" + "".join(
        f"{c}/{c}_00{k}{'.png' if k % 4 == 0 else '.jpg'},1,1,2,2\n" for c in CLASSES for k in range(3)))
    with pytest.raises(FcamError, match="class 'disc': 10 images, 3 with localization; .* need 2 \\(val\\) \\+ 2 \\(test\\)"):
        prepare_dataset(own_data / "images", tmp_path / "o", "X", boxes=few, fractions=(0.6, 0.2, 0.2))


def test_bad_image_folders_and_masks_are_named(own_data, tmp_path):
    images = copy_images(own_data, tmp_path / "images")
    (images / "stray.jpg").write_bytes((images / BOX_ROW).read_bytes())
    with pytest.raises(FcamError, match="stray.jpg: image outside a class folder"):
        prepare_dataset(images, tmp_path / "o", "X", boxes=own_data / "boxes.csv")
    (images / "stray.jpg").unlink()
    (images / "empty").mkdir()
    with pytest.raises(FcamError, match="class folder .*empty holds no image"):
        prepare_dataset(images, tmp_path / "o", "X", boxes=own_data / "boxes.csv")
    (images / "empty").rmdir()
    (images / "disc" / "a,b.jpg").write_bytes((images / BOX_ROW).read_bytes())
    with pytest.raises(FcamError, match="cannot hold a comma"):
        prepare_dataset(images, tmp_path / "o", "X", boxes=own_data / "boxes.csv")
    (images / "disc" / "a,b.jpg").unlink()
    (images / "disc" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FcamError, match="broken.jpg: not a readable image"):
        prepare_dataset(images, tmp_path / "o", "X", boxes=own_data / "boxes.csv")
    (images / "disc" / "broken.jpg").unlink()

    masks = write(tmp_path / "m.csv", f"image,mask\n{BOX_ROW},{own_data}/masks/disc/disc_002.png\n")
    with pytest.raises(FcamError, match=r"m.csv:2: mask .*disc_002.png is \d+x\d+, its image 'disc/disc_001.jpg' is"):
        prepare_dataset(images, tmp_path / "o", "X", masks=masks)
    masks = write(tmp_path / "m.csv", f"image,mask\n{BOX_ROW},nowhere.png\n")
    with pytest.raises(FcamError, match="m.csv:2: mask file not found: .*nowhere.png"):
        prepare_dataset(images, tmp_path / "o", "X", masks=masks)
    mask = f"{own_data}/masks/disc/disc_001.png"
    masks = write(tmp_path / "m.csv", f"image,mask,ignore\n{BOX_ROW},{mask},{mask}\n{BOX_ROW},{mask},\n")
    with pytest.raises(FcamError, match="m.csv:3: duplicate mask"):
        prepare_dataset(images, tmp_path / "o", "X", masks=masks)


def test_output_is_protected_and_names_are_checked(own_data, tmp_path):
    prepare_dataset(own_data / "images", tmp_path, "X", boxes=own_data / "boxes.csv")
    with pytest.raises(FcamError, match="exists; pass --overwrite"):
        prepare_dataset(own_data / "images", tmp_path, "X", boxes=own_data / "boxes.csv")
    prepare_dataset(own_data / "images", tmp_path, "X", boxes=own_data / "boxes.csv", seed=9, overwrite=True)
    with pytest.raises(FcamError, match="is inside the output folder"):
        prepare_dataset(tmp_path / "images/X", tmp_path, "X", boxes=own_data / "boxes.csv", overwrite=True)
    assert (tmp_path / "images/X" / BOX_ROW).is_file()  # the refused call deleted nothing
    with pytest.raises(FcamError, match="dataset name 'a/b' must be a folder name"):
        prepare_dataset(own_data / "images", tmp_path, "a/b", boxes=own_data / "boxes.csv")
    with pytest.raises(FcamError, match="exactly one of --boxes"):
        prepare_dataset(own_data / "images", tmp_path, "Y")


def test_command_prints_the_config_keys_and_errors_in_one_line(own_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_main(["--images", str(own_data / "images"), "--boxes", str(own_data / "boxes.csv"),
                         "--dataset", "Pets", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test: 6 images, 3 classes" in printed and f"data.metadata_root={out}/metadata" in printed
    assert prepare_main(["--images", str(own_data / "images"), "--boxes", str(own_data / "boxes.csv"),
                         "--dataset", "Pets", "--out", str(out), "--fractions", "0.5", "0.5", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --fractions")
    # --help documents the CSV formats and the command imports no torch.
    code = ("import sys, fcam.cli.prepare as p; heavy = {'torch', 'torchvision', 'cv2', 'matplotlib'} & set(sys.modules);"
            " assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(SystemExit):
        prepare_main(["--help"])
    assert "image,x0,y0,x1,y1" in capsys.readouterr().out


def train_and_evaluate(out: Path, dataset: str, tmp_path: Path) -> tuple[dict, dict, Path]:
    """fcam-train-cls, fcam-train-decoder and fcam-eval (cam, fcam) on a converted dataset."""
    cfg = tiny_config(out, dataset=dataset)
    config = tmp_path / f"{dataset}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cls_run, fcam_run, evaluation = tmp_path / "cls", tmp_path / "fcam", tmp_path / "eval"
    assert train_cls(["--config", str(config), "--output", str(cls_run)]) == 0
    assert train_decoder(["--config", str(config), "--classifier", str(cls_run / "best.pt"),
                          "--output", str(fcam_run)]) == 0
    assert eval_main(["--checkpoint", str(cls_run / "best.pt"), "--decoder", str(fcam_run / "best.pt"),
                      "--method", "cam", "fcam", "--split", "test", "--save-scoremaps",
                      "--output", str(evaluation)]) == 0
    logs = [json.loads(line) for run in (cls_run, fcam_run) for line in read(run / "log.jsonl")]
    metrics = {m: json.loads((evaluation / m / "metrics.json").read_text()) for m in ("cam", "fcam")}
    return metrics, logs[-1], evaluation


def test_converted_box_dataset_of_another_name_trains_end_to_end(own_data, tmp_path):
    out = tmp_path / "data"
    assert prepare_main(["--images", str(own_data / "images"), "--boxes", str(own_data / "boxes.csv"),
                         "--dataset", "Shapes", "--out", str(out), "--fractions", "0.6", "0.2", "0.2"]) == 0
    metrics, last_log, evaluation = train_and_evaluate(out, "Shapes", tmp_path)
    assert last_log["epoch"] == 2 and "val_MaxBoxAcc" in last_log and "train_crf" in last_log
    for method in ("cam", "fcam"):
        assert {"MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "top5_loc", "cls_acc"} <= set(metrics[method])
        assert all(0 <= metrics[method][k] <= 100 for k in ("MaxBoxAcc", "MaxBoxAccV2", "cls_acc"))
        assert len(list((evaluation / method / "scoremaps").rglob("*.npy"))) == 6
    # The saved F-CAM maps scored again through --dataset Shapes give the same numbers.
    assert eval_main(["--scoremap-root", str(evaluation / "fcam/scoremaps"), "--metadata-root", str(out / "metadata"),
                      "--dataset", "Shapes", "--split", "test", "--eval-size", "32", "--cam-curve-interval", "0.01",
                      "--num-workers", "0", "--output", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again/metrics.json").read_text())
    assert again["MaxBoxAcc"] == metrics["fcam"]["MaxBoxAcc"] and again["MaxBoxAccV2"] == metrics["fcam"]["MaxBoxAccV2"]


def test_converted_mask_dataset_of_another_name_trains_end_to_end(own_data, tmp_path):
    out = tmp_path / "data"
    assert prepare_main(["--images", str(own_data / "images"), "--masks", str(own_data / "masks.csv"),
                         "--dataset", "ShapeMasks", "--out", str(out), "--fractions", "0.6", "0.2", "0.2"]) == 0
    metrics, last_log, evaluation = train_and_evaluate(out, "ShapeMasks", tmp_path)
    assert last_log["epoch"] == 2 and "val_PxAP" in last_log
    for method in ("cam", "fcam"):
        assert 0 < metrics[method]["PxAP"] <= 100 and "MaxBoxAcc" not in metrics[method]
    assert eval_main(["--scoremap-root", str(evaluation / "fcam/scoremaps"), "--metadata-root", str(out / "metadata"),
                      "--mask-root", str(out / "masks"), "--dataset", "ShapeMasks", "--split", "test",
                      "--eval-size", "32", "--cam-curve-interval", "0.01", "--num-workers", "0",
                      "--output", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again/metrics.json").read_text())["PxAP"] == metrics["fcam"]["PxAP"]
