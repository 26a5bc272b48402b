"""The synthetic WSOL dataset: determinism, layout, ground truth consistency and its command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fcam.cli.synth import main as synth_main
from fcam.data import generate_synthetic, load_gt_mask, load_metadata
from fcam.data.synthetic import SPLITS, _BACKGROUND_PHOTOS, _BODY_PHOTOS, _load_photos, _render_image

TINY = dict(image_size=48, num_classes=3, num_train_per_class=4, num_val_per_class=2, num_test_per_class=2,
            two_object_fraction=0.3, progress=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, seed=5, **TINY)
    return out


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(synth, tmp_path):
    roots = generate_synthetic(tmp_path / "again", seed=5, **TINY)
    assert roots == {"image_root": tmp_path / "again/images", "metadata_root": tmp_path / "again/metadata",
                     "mask_root": tmp_path / "again/masks"}
    assert file_bytes(tmp_path / "again") == file_bytes(synth)
    generate_synthetic(tmp_path / "other", seed=6, **TINY)
    first, other = file_bytes(synth), file_bytes(tmp_path / "other")
    pngs = [name for name in first if name.startswith("images/") and name in other]
    assert pngs and all(first[name] != other[name] for name in pngs)


@pytest.mark.parametrize("split", SPLITS)
def test_layout_reads_back_for_both_datasets(synth, split):
    cub = load_metadata(synth / "metadata", "CUB", split)
    openimages = load_metadata(synth / "metadata", "OpenImages", split)
    per_class = TINY[f"num_{split}_per_class"]
    for meta in (cub, openimages):
        assert meta.num_classes == 3
        assert np.bincount(meta.labels).tolist() == [per_class] * 3
        for image_id in meta.image_ids:
            assert (synth / "images" / meta.dataset / image_id).is_file()
    assert openimages.sizes == {}  # as in the real OpenImages metadata
    for image_id in cub.image_ids:
        with Image.open(synth / "images/CUB" / image_id) as image:
            assert image.size == cub.sizes[image_id]
            assert image.mode == "RGB"
    widths = [w for w, _ in cub.sizes.values()]
    assert all(0.8 * 48 - 1 <= side <= 1.2 * 48 + 1 for size in cub.sizes.values() for side in size)
    assert len(set(widths)) > 1


@pytest.mark.parametrize("split", SPLITS)
def test_boxes_are_the_tight_boxes_of_the_instance_masks(synth, split):
    cub = load_metadata(synth / "metadata", "CUB", split)
    openimages = load_metadata(synth / "metadata", "OpenImages", split)
    assert cub.labels == openimages.labels
    mask_root = synth / "masks" / "OpenImages"
    for cub_id, oi_id in zip(cub.image_ids, openimages.image_ids):
        image = (synth / "images/CUB" / cub_id).read_bytes()
        assert image == (synth / "images/OpenImages" / oi_id).read_bytes()
        paths, ignore_path = openimages.masks[oi_id]
        masks = [cv2.imread(str(mask_root / path), cv2.IMREAD_GRAYSCALE) > 0 for path in paths]
        ignore = cv2.imread(str(mask_root / ignore_path), cv2.IMREAD_GRAYSCALE) > 0
        width, height = cub.sizes[cub_id]
        tight = []
        for mask in masks:
            assert mask.shape == (height, width)
            rows, cols = np.nonzero(mask)
            tight.append([cols.min(), rows.min(), cols.max(), rows.max()])
        np.testing.assert_array_equal(cub.boxes[cub_id], tight)
        union = np.logical_or.reduce(masks)
        assert ignore.any() and not (ignore & union).any()
        assert sum(mask.sum() for mask in masks) == union.sum()  # instances do not overlap
        foreground, ignored = load_gt_mask(synth / "masks", paths, ignore_path, size=32)
        assert foreground.any() and ignored.any()


def test_some_images_hold_two_objects(synth):
    boxes = load_metadata(synth / "metadata", "CUB", "train").boxes
    counts = {len(image_boxes) for image_boxes in boxes.values()}
    assert counts == {1, 2}


def test_objects_are_large_and_the_class_part_is_small():
    backgrounds, bodies = _load_photos(_BACKGROUND_PHOTOS[:2]), _load_photos(_BODY_PHOTOS[:2])
    rng = np.random.default_rng(0)
    for label in range(16):
        image, objects = _render_image(rng, label, 96, False, backgrounds, bodies)
        assert image.dtype == np.uint8 and image.ndim == 3
        (obj,) = objects
        rows, cols = np.nonzero(obj.mask)
        extent = max(cols.max() - cols.min(), rows.max() - rows.min()) + 1
        assert 0.38 * min(image.shape[:2]) <= extent <= 0.77 * min(image.shape[:2])
        assert not (obj.part & ~obj.mask).any()
        assert 0.05 <= obj.part.sum() / obj.mask.sum() <= 0.12


def run_synth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fcam.cli.synth", *args], capture_output=True, text=True,
                          timeout=120)


def test_command_writes_a_readable_dataset(tmp_path):
    result = run_synth(str(tmp_path / "out"), "--tiny", "--quiet", "--image-size", "40", "--num-classes", "2",
                       "--val-per-class", "1")
    assert result.returncode == 0, result.stderr
    assert "metadata_root" in result.stdout
    meta = load_metadata(tmp_path / "out/metadata", "OpenImages", "val")
    assert len(meta.image_ids) == 2 and meta.num_classes == 2
    assert len(load_metadata(tmp_path / "out/metadata", "CUB", "train").image_ids) == 16


def test_command_rejects_a_bad_value_in_one_line(tmp_path):
    result = run_synth(str(tmp_path / "out"), "--quiet", "--num-classes", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: num_classes must be in [1, 64], got 0"]


@pytest.mark.parametrize("args", [["--num-classes", "65"], ["--image-size", "8"], ["--train-per-class", "0"],
                                  ["--two-object-fraction", "2"]])
def test_bad_values_are_one_line_errors_before_writing(tmp_path, capsys, args):
    assert synth_main([str(tmp_path / "out"), "--quiet", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_unparsable_arguments_exit_with_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_main([str(tmp_path / "out"), "--seed", "abc"])
    assert exit_info.value.code == 2 and "--seed" in capsys.readouterr().err
