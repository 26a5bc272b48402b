"""The synthetic WSOL dataset: determinism, layout, ground truth consistency and its command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fcam.cli.synth import main as synth_main
from fcam.data import generate_synthetic, load_gt_mask, load_metadata
from fcam.data.synthetic import (_BACKGROUND_PHOTOS, _BODY_PHOTOS, _PART_COLOURS, _PART_SHAPES, SPLITS, _Assets,
                                 _class_pair, _draw_scene, _free_pairs, _load_photos, _render_image, _rgb, _Scene,
                                 _tight_box)

TINY = dict(image_size=48, num_classes=3, num_train_per_class=6, num_val_per_class=2, num_test_per_class=2,
            two_object_fraction=0.5, max_instances=3, distractor_fraction=0.5, progress=False)


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


def mask_files(synth: Path, image_id: str) -> list[Path]:
    stem = image_id.rsplit(".", 1)[0]
    return sorted((synth / "masks/OpenImages").glob(f"{stem}_m*.png"))


@pytest.mark.parametrize("split", SPLITS)
def test_instance_counts_match_the_localization_lines(synth, split):
    cub = load_metadata(synth / "metadata", "CUB", split)
    openimages = load_metadata(synth / "metadata", "OpenImages", split)
    lines = (synth / "metadata/OpenImages" / split / "localization.txt").read_text().splitlines()
    for cub_id, oi_id in zip(cub.image_ids, openimages.image_ids):
        count = sum(line.startswith(f"{oi_id},") for line in lines)
        assert 1 <= count <= 3
        assert len(cub.boxes[cub_id]) == len(openimages.masks[oi_id][0]) == len(mask_files(synth, oi_id)) == count


def test_images_hold_one_to_three_objects_as_recorded(synth):
    counts = []
    for split in SPLITS:
        counts += [len(boxes) for boxes in load_metadata(synth / "metadata", "CUB", split).boxes.values()]
    assert set(counts) == {1, 2, 3} and counts.count(1) > counts.count(3)
    settings = json.loads((synth / "synth.json").read_text())
    assert settings["images_by_instances"] == {str(n): counts.count(n) for n in set(counts)}
    assert settings["max_instances"] == 3 and settings["distractor_fraction"] == 0.5
    assert sum(settings["images_by_distractors"].values()) == len(counts)
    assert sum(n for key, n in settings["images_by_distractors"].items() if key != "0") > 0


@pytest.fixture(scope="module")
def assets() -> _Assets:
    return _Assets(_load_photos(_BACKGROUND_PHOTOS[:2]), _load_photos(_BODY_PHOTOS[:2]), _free_pairs(4))


def test_single_objects_vary_in_scale_and_the_class_part_is_small(assets):
    rng = np.random.default_rng(0)
    extents = []
    for label in range(24):
        image, objects, distractors = _render_image(rng, label % 4, 96, _Scene(instances=1), assets)
        assert image.dtype == np.uint8 and image.ndim == 3 and distractors == []
        (obj,) = objects
        rows, cols = np.nonzero(obj.mask)
        extents.append((max(cols.max() - cols.min(), rows.max() - rows.min()) + 1) / min(image.shape[:2]))
        assert not (obj.part & ~obj.mask).any()
        assert 0.05 <= obj.part.sum() / obj.mask.sum() <= 0.12
    assert 0.28 <= min(extents) < 0.4 and 0.7 < max(extents) <= 0.82


def test_each_instance_holds_its_class_part_and_instances_do_not_touch(assets):
    rng = np.random.default_rng(1)
    for label in range(12):
        image, objects, _ = _render_image(rng, label % 4, 96, _Scene(instances=2 + label % 2), assets)
        assert len(objects) == 2 + label % 2
        union = np.zeros(image.shape[:2], dtype=bool)
        for obj in objects:
            assert obj.part.any() and not (obj.part & ~obj.mask).any()
            assert 0.05 <= obj.part.sum() / obj.mask.sum() <= 0.12
            grown = cv2.dilate(obj.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert not (grown & union).any()
            union |= obj.mask


def test_distractors_lie_outside_every_object_box(assets):
    rng = np.random.default_rng(2)
    seen = 0
    for label in range(16):
        scene = _Scene(instances=1 + label % 3, blobs=1 + label % 2, parts=1 + label % 3)
        image, objects, distractors = _render_image(rng, label % 4, 96, scene, assets)
        assert 1 <= len(distractors) <= scene.blobs + scene.parts
        boxes = np.zeros(image.shape[:2], dtype=bool)
        for obj in objects:
            x0, y0, x1, y1 = _tight_box(obj.mask)
            boxes[y0 : y1 + 1, x0 : x1 + 1] = True
        covered = np.zeros_like(boxes)
        for mask in distractors:
            assert mask.any() and not (mask & boxes).any() and not (mask & covered).any()
            covered |= mask
        seen += len(distractors)
    assert seen > 30


def test_part_distractors_use_no_class_pair():
    def key(shape: np.ndarray, colour: np.ndarray) -> bytes:
        return shape.tobytes() + colour.tobytes()

    every, free = {key(*pair) for pair in _free_pairs(0)}, {key(*pair) for pair in _free_pairs(4)}
    assert len(every) == 64 and len(free) == 60 and free < every
    shapes, colours = list(_PART_SHAPES.values()), list(_PART_COLOURS.values())
    for label in range(4):
        shape, colour = _class_pair(label)
        assert key(shapes[shape], _rgb(*colours[colour])) not in free
    assert _free_pairs(64) == []
    rng = np.random.default_rng(0)
    scenes = [_draw_scene(rng, 0.3, 3, 1.0, part_distractors=False) for _ in range(50)]
    assert all(scene.parts == 0 and scene.blobs >= 1 for scene in scenes)


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


def test_command_flags_set_instances_and_distractors(tmp_path):
    result = run_synth(str(tmp_path / "out"), "--tiny", "--quiet", "--image-size", "40", "--num-classes", "2",
                       "--max-instances", "1", "--distractor-fraction", "0", "--two-object-fraction", "1")
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "out/synth.json").read_text())
    assert settings["max_instances"] == 1 and settings["distractor_fraction"] == 0.0
    assert settings["images_by_instances"] == {"1": 24} and settings["images_by_distractors"] == {"0": 24}
    boxes = load_metadata(tmp_path / "out/metadata", "CUB", "train").boxes
    assert all(len(image_boxes) == 1 for image_boxes in boxes.values())


def test_command_rejects_a_bad_value_in_one_line(tmp_path):
    result = run_synth(str(tmp_path / "out"), "--quiet", "--num-classes", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: num_classes must be in [1, 64], got 0"]


@pytest.mark.parametrize("args", [["--num-classes", "65"], ["--image-size", "8"], ["--train-per-class", "0"],
                                  ["--two-object-fraction", "2"], ["--max-instances", "0"],
                                  ["--max-instances", "5"], ["--distractor-fraction", "-0.1"]])
def test_bad_values_are_one_line_errors_before_writing(tmp_path, capsys, args):
    assert synth_main([str(tmp_path / "out"), "--quiet", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_unparsable_arguments_exit_with_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_main([str(tmp_path / "out"), "--seed", "abc"])
    assert exit_info.value.code == 2 and "--seed" in capsys.readouterr().err
