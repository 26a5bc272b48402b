"""Metadata readers, ground-truth masks at evaluation size and the image Dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from fcam.data import DATASETS, MaskCache, WSOLDataset, load_gt_mask, load_metadata
from fcam.data import masks as masks_module
from fcam.data.dataset import BACKENDS, read_image
from fcam.data.transforms import IMAGENET_MEAN, IMAGENET_STD, complete_batch, resize_square
from fcam.engine.loaders import UInt8Loader, resolve_num_workers
from fcam.errors import FcamError

CUB_FILES = {
    "image_ids.txt": ["a/1.jpg", "a/2.jpg", "b/3.jpg"],
    "class_labels.txt": ["a/1.jpg,0", "a/2.jpg,0", "b/3.jpg,2"],
    "image_sizes.txt": ["a/1.jpg,500,300", "a/2.jpg,40,60", "b/3.jpg,224,224"],
    "localization.txt": ["a/1.jpg,10,20,499,299", "a/1.jpg,0,0,5,5", "a/2.jpg,3,4,30,50", "b/3.jpg,0,0,223,223"],
}
OPENIMAGES_FILES = {
    "image_ids.txt": ["val/x/1.jpg", "val/y/2.jpg"],
    "class_labels.txt": ["val/x/1.jpg,1", "val/y/2.jpg,0"],
    "image_sizes.txt": [],
    "localization.txt": [
        "val/x/1.jpg,val/x/1_m0.png,val/x/1_ignore.png",
        "val/x/1.jpg,val/x/1_m1.png,",
        "val/y/2.jpg,val/y/2_m0.png,val/y/2_ignore.png",
    ],
}


def write_split(root: Path, dataset: str, files: dict[str, list[str]], split: str = "val",
                trailing_newline: bool = False) -> Path:
    folder = root / dataset / split
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("trailing_newline", [False, True])
def test_box_metadata_is_read_as_written(tmp_path, trailing_newline):
    write_split(tmp_path, "CUB", CUB_FILES, trailing_newline=trailing_newline)
    meta = load_metadata(tmp_path, "CUB", "val")
    assert (meta.dataset, meta.split, meta.kind) == ("CUB", "val", "box")
    assert meta.image_ids == ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    assert meta.labels == [0, 0, 2]
    assert meta.num_classes == 3
    assert meta.sizes == {"a/1.jpg": (500, 300), "a/2.jpg": (40, 60), "b/3.jpg": (224, 224)}
    assert meta.masks is None
    np.testing.assert_array_equal(meta.boxes["a/1.jpg"], [[10, 20, 499, 299], [0, 0, 5, 5]])
    assert meta.boxes["a/2.jpg"].dtype == np.int64 and meta.boxes["a/2.jpg"].shape == (1, 4)
    assert meta.folder == tmp_path / "CUB" / "val"


def test_mask_metadata_allows_empty_sizes_and_keeps_first_ignore_path(tmp_path):
    write_split(tmp_path, "OpenImages", OPENIMAGES_FILES)
    meta = load_metadata(tmp_path, "OpenImages", "val")
    assert meta.kind == "mask" and meta.boxes is None and meta.sizes == {}
    assert meta.masks == {
        "val/x/1.jpg": (["val/x/1_m0.png", "val/x/1_m1.png"], "val/x/1_ignore.png"),
        "val/y/2.jpg": (["val/y/2_m0.png"], "val/y/2_ignore.png"),
    }
    assert meta.labels == [1, 0]


def test_empty_localization_means_no_ground_truth(tmp_path):
    files = dict(CUB_FILES, **{"localization.txt": [], "image_sizes.txt": []})
    write_split(tmp_path, "ILSVRC", files, split="train")
    meta = load_metadata(tmp_path, "ILSVRC", "train")
    assert meta.boxes is None and meta.sizes == {}
    with pytest.raises(FcamError, match="no boxes"):
        meta.gt_boxes()


def replaced(files, name, lines):
    return dict(files, **{name: lines})


# (dataset, files, file named in the error, line number or None, words of the message)
INVALID = {
    "malformed label line": ("CUB", replaced(CUB_FILES, "class_labels.txt", ["a/1.jpg,0", "a/2.jpg", "b/3.jpg,2"]),
                             "class_labels.txt", 2, "malformed"),
    "malformed box line": ("CUB", replaced(CUB_FILES, "localization.txt", ["a/1.jpg,1,2,3", "a/2.jpg,3,4,30,50"]),
                           "localization.txt", 1, "malformed"),
    "blank id line": ("CUB", replaced(CUB_FILES, "image_ids.txt", ["a/1.jpg", "", "a/2.jpg", "b/3.jpg"]),
                      "image_ids.txt", 2, "malformed"),
    "duplicate id": ("CUB", replaced(CUB_FILES, "image_ids.txt", ["a/1.jpg", "a/2.jpg", "b/3.jpg", "a/2.jpg"]),
                     "image_ids.txt", 4, "duplicate"),
    "extra id in labels": ("CUB", replaced(CUB_FILES, "class_labels.txt", CUB_FILES["class_labels.txt"] + ["c/9.jpg,1"]),
                           "class_labels.txt", 4, "c/9.jpg"),
    "missing label": ("CUB", replaced(CUB_FILES, "class_labels.txt", ["a/1.jpg,0", "b/3.jpg,2"]),
                      "class_labels.txt", None, "a/2.jpg"),
    "missing size": ("CUB", replaced(CUB_FILES, "image_sizes.txt", ["a/1.jpg,500,300", "a/2.jpg,40,60"]),
                     "image_sizes.txt", None, "b/3.jpg"),
    "extra id in sizes": ("CUB", replaced(CUB_FILES, "image_sizes.txt", CUB_FILES["image_sizes.txt"] + ["z.jpg,1,1"]),
                          "image_sizes.txt", 4, "z.jpg"),
    "image without box": ("CUB", replaced(CUB_FILES, "localization.txt", ["a/1.jpg,10,20,30,40", "b/3.jpg,0,0,1,1"]),
                          "localization.txt", None, "a/2.jpg"),
    "box of unknown image": ("CUB", replaced(CUB_FILES, "localization.txt", CUB_FILES["localization.txt"] + ["q.jpg,0,0,1,1"]),
                             "localization.txt", 5, "q.jpg"),
    "label not an int": ("CUB", replaced(CUB_FILES, "class_labels.txt", ["a/1.jpg,0", "a/2.jpg,cat", "b/3.jpg,2"]),
                         "class_labels.txt", 2, "cat"),
    "negative label": ("CUB", replaced(CUB_FILES, "class_labels.txt", ["a/1.jpg,0", "a/2.jpg,0", "b/3.jpg,-1"]),
                       "class_labels.txt", 3, "-1"),
    "box past the width": ("CUB", replaced(CUB_FILES, "localization.txt", ["a/1.jpg,10,20,500,299", "a/2.jpg,3,4,30,50", "b/3.jpg,0,0,1,1"]),
                           "localization.txt", 1, "500x300"),
    "box with x1 < x0": ("CUB", replaced(CUB_FILES, "localization.txt", ["a/1.jpg,10,20,30,40", "a/2.jpg,30,4,3,50", "b/3.jpg,0,0,1,1"]),
                         "localization.txt", 2, "x0 <= x1"),
    "boxes without sizes": ("CUB", replaced(CUB_FILES, "image_sizes.txt", []), "image_sizes.txt", None, "need the image sizes"),
    "zero width": ("CUB", replaced(CUB_FILES, "image_sizes.txt", ["a/1.jpg,0,300", "a/2.jpg,40,60", "b/3.jpg,224,224"]),
                   "image_sizes.txt", 1, "width"),
    "second ignore path": ("OpenImages", replaced(OPENIMAGES_FILES, "localization.txt", [
        "val/x/1.jpg,val/x/1_m0.png,val/x/1_ignore.png", "val/x/1.jpg,val/x/1_m1.png,val/x/1_ignore.png",
        "val/y/2.jpg,val/y/2_m0.png,val/y/2_ignore.png"]), "localization.txt", 2, "ignore"),
    "image without mask": ("OpenImages", replaced(OPENIMAGES_FILES, "localization.txt", [
        "val/x/1.jpg,val/x/1_m0.png,val/x/1_ignore.png"]), "localization.txt", None, "val/y/2.jpg"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_metadata_names_file_and_line(tmp_path, case):
    dataset, files, bad_file, line, words = INVALID[case]
    folder = write_split(tmp_path, dataset, files)
    with pytest.raises(FcamError) as error:
        load_metadata(tmp_path, dataset, "val")
    message = str(error.value)
    assert str(folder / bad_file) in message
    if line is not None:
        assert f"{bad_file}:{line}:" in message
    assert words in message


def test_missing_file_unknown_dataset_and_split_list_what_is_there(tmp_path):
    folder = write_split(tmp_path, "CUB", CUB_FILES)
    write_split(tmp_path, "Birds", CUB_FILES, split="test")
    (folder / "image_sizes.txt").unlink()
    with pytest.raises(FcamError, match="image_sizes.txt"):
        load_metadata(tmp_path, "CUB", "val")
    with pytest.raises(FcamError, match=r"COCO.*holds: Birds, CUB"):
        load_metadata(tmp_path, "COCO", "val")
    with pytest.raises(FcamError, match=r"'val'.*holds: test"):
        load_metadata(tmp_path, "Birds", "val")
    with pytest.raises(FcamError, match="has no dataset folder"):
        load_metadata(tmp_path / "nowhere", "CUB", "val")
    for bad in ("", "..", "a/b"):
        with pytest.raises(FcamError, match="must be a folder name"):
            load_metadata(tmp_path, bad, "val")
    assert set(DATASETS) == {"CUB", "ILSVRC", "OpenImages"}  # the known ones, described for help texts


def test_fcam_data_loads_its_readers_without_torch_and_the_rest_on_use():
    code = ("import sys; from fcam.data import DATASETS, load_metadata; "
            "heavy = {'torch', 'torchvision', 'cv2', 'matplotlib'} & set(sys.modules); assert not heavy, heavy; "
            "from fcam.data import WSOLDataset, load_gt_mask, prepare_dataset; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["Birds", "ILSVRC", "OpenImages"])
def test_any_name_reads_boxes_and_masks_kind_from_localization(tmp_path, name):
    write_split(tmp_path, name, CUB_FILES)
    write_split(tmp_path, name, OPENIMAGES_FILES, split="test")
    write_split(tmp_path, name, replaced(CUB_FILES, "localization.txt", []), split="train")
    boxes, masks, train = (load_metadata(tmp_path, name, split) for split in ("val", "test", "train"))
    assert (boxes.kind, masks.kind, train.kind) == ("box", "mask", None)
    assert boxes.dataset == masks.dataset == name
    assert sorted(boxes.boxes) == sorted(CUB_FILES["image_ids.txt"]) and boxes.masks is None
    assert masks.masks["val/y/2.jpg"] == (["val/y/2_m0.png"], "val/y/2_ignore.png") and masks.boxes is None
    assert train.boxes is None and train.masks is None and train.sizes == boxes.sizes
    with pytest.raises(FcamError, match="no boxes or masks"):
        train.require_ground_truth()
    with pytest.raises(FcamError, match="masks, not boxes"):
        masks.gt_boxes()
    boxes.require_ground_truth()


@pytest.mark.parametrize("rows, line, words", [
    (["a/1.jpg,1,2,3,4", "a/2.jpg,a/2_m.png,", "b/3.jpg,0,0,1,1"], 2, "x0,y0,x1,y1, like line 1"),
    (["a/1.jpg,a/1_m.png,", "a/2.jpg,3,4,30,50", "b/3.jpg,b.png,"], 2, "mask_path,ignore_path, like line 1"),
    (["a/1.jpg,1,2,3", "a/2.jpg,3,4,5"], 1, "(boxes) or"),
])
def test_localization_rows_of_two_kinds_or_neither_are_refused(tmp_path, rows, line, words):
    folder = write_split(tmp_path, "Mine", replaced(CUB_FILES, "localization.txt", rows))
    with pytest.raises(FcamError) as error:
        load_metadata(tmp_path, "Mine", "val")
    assert f"{folder / 'localization.txt'}:{line}:" in str(error.value) and words in str(error.value)


def test_gt_boxes_scale_as_x_times_size_over_w(tmp_path):
    # Find a coordinate where (x * 224) / w and x * (224 / w) truncate differently.
    x, width = next((x, w) for w in range(50, 1000) for x in range(w)
                    if int((x * 224.0) / w) != int(x * (224.0 / w)))
    height = 333
    files = {
        "image_ids.txt": ["im.jpg"],
        "class_labels.txt": ["im.jpg,0"],
        "image_sizes.txt": [f"im.jpg,{width},{height}"],
        "localization.txt": [f"im.jpg,{x},7,{width - 1},{height - 1}", f"im.jpg,0,0,{x},100"],
    }
    write_split(tmp_path, "CUB", files)
    (boxes,) = load_metadata(tmp_path, "CUB", "val").gt_boxes(224)
    expected = [[int((x * 224.0) / width), int((7 * 224.0) / height), int(((width - 1) * 224.0) / width), 223],
                [0, 0, int((x * 224.0) / width), int((100 * 224.0) / height)]]
    np.testing.assert_array_equal(boxes, expected)
    assert boxes.dtype == np.int64
    assert boxes[0, 0] != int(x * (224.0 / width))


def write_gray(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels.astype(np.uint8))


def test_gt_mask_nearest_resize_union_and_ignore(tmp_path):
    rng = np.random.default_rng(3)
    first = rng.choice([0, 1, 128, 255], size=(8, 8)).astype(np.uint8)  # 1 counts: > 0.5 on 0..255
    second = np.zeros((8, 8), np.uint8)
    second[5:, :3] = 200
    ignore = np.zeros((8, 8), np.uint8)
    ignore[:4, :] = 255
    for name, pixels in (("i/m0.png", first), ("i/m1.png", second), ("i/ignore.png", ignore)):
        write_gray(tmp_path / "OpenImages" / name, pixels)

    # Upscaling 8 -> 16 with nearest neighbour repeats every pixel twice in each direction.
    mask, ignored = load_gt_mask(tmp_path, ["i/m0.png", "i/m1.png"], "i/ignore.png", size=16)
    union = (first > 0) | (second > 0)
    np.testing.assert_array_equal(mask, union.repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(ignored, ((ignore > 0) & ~union).repeat(2, 0).repeat(2, 1))
    assert mask.dtype == bool and ignored.dtype == bool and not (mask & ignored).any()

    # Downscaling 8 -> 4 keeps every other pixel (nearest), not an average.
    mask, ignored = load_gt_mask(tmp_path, ["i/m0.png"], None, size=4)
    np.testing.assert_array_equal(mask, first[::2, ::2] > 0)
    assert not ignored.any()


def test_gt_mask_of_any_dataset_is_read_under_its_name(tmp_path):
    pixels = np.zeros((6, 6), np.uint8)
    pixels[1:3, 2:5] = 255
    write_gray(tmp_path / "Cells" / "v/m.png", pixels)
    mask, ignored = load_gt_mask(tmp_path, ["v/m.png"], None, size=6, dataset="Cells")
    np.testing.assert_array_equal(mask, pixels > 0)
    with pytest.raises(FcamError, match=str(tmp_path / "OpenImages" / "v/m.png")):
        load_gt_mask(tmp_path, ["v/m.png"], None, size=6)  # OpenImages stays the default


def test_mask_cache_serves_the_decoded_masks_until_a_png_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    pixels = {name: rng.choice([0, 255], size=(9, 7)).astype(np.uint8) for name in ("m0.png", "m1.png", "ign.png")}
    for name, values in pixels.items():
        write_gray(tmp_path / "OpenImages" / name, values)
    cache = MaskCache(tmp_path / "cache", 12)
    cases = [(["m0.png", "m1.png"], "ign.png"), (["m0.png", "m1.png", "ign.png"], None), (["m0.png"], "m1.png")]
    decoded = [load_gt_mask(tmp_path, paths, ignore, size=12) for paths, ignore in cases]
    for (paths, ignore), expected in zip(cases, decoded):
        stored = load_gt_mask(tmp_path, paths, ignore, size=12, cache=cache)
        assert all(np.array_equal(a, b) for a, b in zip(stored, expected))
    assert len(list((tmp_path / "cache" / "12").rglob("*.bin"))) == len(cases)  # same files, other roles: 3 entries

    # Served from the cache: no PNG is decoded any more.
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a PNG that is cached")

    monkeypatch.setattr(masks_module.cv2, "imread", no_decoding)
    for (paths, ignore), expected in zip(cases, decoded):
        cached = load_gt_mask(tmp_path, paths, ignore, size=12, cache=cache)
        assert all(np.array_equal(a, b) and a.dtype == bool and a.shape == (12, 12) for a, b in zip(cached, expected))
    monkeypatch.undo()

    # A rewritten PNG (other size and time) is decoded again, and the entry replaced.
    write_gray(tmp_path / "OpenImages" / "m1.png", np.full((9, 7), 255))
    stat = (tmp_path / "OpenImages" / "m1.png").stat()
    os.utime(tmp_path / "OpenImages" / "m1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = load_gt_mask(tmp_path, ["m0.png", "m1.png"], "ign.png", size=12, cache=cache)
    assert fresh[0].all() and not fresh[1].any()
    monkeypatch.setattr(masks_module.cv2, "imread", no_decoding)
    again = load_gt_mask(tmp_path, ["m0.png", "m1.png"], "ign.png", size=12, cache=cache)
    assert all(np.array_equal(a, b) for a, b in zip(again, fresh))
    with pytest.raises(ValueError, match="size 12"):
        load_gt_mask(tmp_path, ["m0.png"], None, size=8, cache=cache)


def test_mask_cache_directory_errors_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FcamError, match="mask cache: cannot create"):
        MaskCache(blocker / "cache", 8)


def test_gt_mask_missing_file_is_named(tmp_path):
    write_gray(tmp_path / "OpenImages" / "m.png", np.full((4, 4), 255))
    with pytest.raises(FcamError, match="nope.png"):
        load_gt_mask(tmp_path, ["m.png"], "nope.png")
    (tmp_path / "OpenImages" / "broken.png").write_text("not a png")
    with pytest.raises(FcamError, match="broken.png"):
        load_gt_mask(tmp_path, ["broken.png"], None)


@pytest.fixture
def image_split(tmp_path):
    """Three small RGB PNGs of different sizes with their CUB-style metadata."""
    rng = np.random.default_rng(0)
    files = {name: [] for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")}
    for index, (width, height) in enumerate([(40, 30), (25, 50), (33, 33)]):
        image_id = f"c{index}/im{index}.png"
        path = tmp_path / "images" / image_id
        path.parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        files["image_ids.txt"].append(image_id)
        files["class_labels.txt"].append(f"{image_id},{index}")
        files["image_sizes.txt"].append(f"{image_id},{width},{height}")
        files["localization.txt"].append(f"{image_id},1,1,10,10")
    write_split(tmp_path / "meta", "CUB", files)
    return tmp_path / "images", load_metadata(tmp_path / "meta", "CUB", "val")


def normalized_from_raw(raw: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (raw / 255 - mean) / std


def test_eval_items_are_the_resized_image(image_split):
    root, meta = image_split
    dataset = WSOLDataset(root, meta, train=False, resize_size=32, crop_size=24)
    assert len(dataset) == 3
    item = dataset[1]
    assert item["label"] == 1 and item["index"] == 1 and item["image_id"] == "c1/im1.png"
    assert item["image"].shape == item["raw"].shape == (3, 24, 24)
    assert item["image"].dtype == item["raw"].dtype == torch.float32
    resized = Image.open(root / "c1/im1.png").convert("RGB").resize((24, 24), Image.BILINEAR)
    np.testing.assert_array_equal(item["raw"].permute(1, 2, 0).numpy(), np.asarray(resized, dtype=np.float32))
    # The reference's eval transform (wsolevaluation's loaders), bit for bit.
    reference = T.Compose([T.Resize((24, 24)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(item["image"], reference(Image.open(root / "c1/im1.png").convert("RGB")),
                               rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["pil", "fast"])
def test_train_items_share_one_crop_and_flip_and_are_reproducible(image_split, backend):
    root, meta = image_split
    dataset = WSOLDataset(root, meta, train=True, resize_size=20, crop_size=12, train_backend=backend)
    resized = resize_square(read_image(root / "c0/im0.png", backend), 20).permute(1, 2, 0).numpy()
    reference = np.asarray(Image.open(root / "c0/im0.png").convert("RGB").resize((20, 20), Image.BILINEAR))
    # PIL's bilinear is the reference's; torchvision's antialiased kernel is a level or two off at most.
    assert np.abs(resized.astype(int) - reference).max() <= (0 if backend == "pil" else 2)
    windows = {}
    for seed in range(12):
        torch.manual_seed(seed)
        item = dataset[0]
        assert item["raw"].shape == item["image"].shape == (3, 12, 12)
        torch.testing.assert_close(item["image"], normalized_from_raw(item["raw"]))
        raw = item["raw"].permute(1, 2, 0).numpy()
        # The raw crop is a window of the resized image, mirrored or not.
        found = [(top, left, flip) for top in range(9) for left in range(9) for flip in (False, True)
                 if np.array_equal(raw, (resized[top:top + 12, left:left + 12, :][:, ::-1] if flip
                                         else resized[top:top + 12, left:left + 12, :]))]
        assert found, "raw is not a crop of the resized image"
        windows[seed] = found[0]
        torch.manual_seed(seed)
        torch.testing.assert_close(dataset[0]["raw"], item["raw"], rtol=0, atol=0)
    assert len(set(windows.values())) > 3
    assert {flip for _, _, flip in windows.values()} == {False, True}


def test_read_image_backends_decode_alike_and_fall_back_to_pil(tmp_path):
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    files = {"a.jpg": photo, "b.png": photo.convert("P"), "c.bmp": photo, "d.png": photo.convert("L"),
             "f.png": photo.convert("RGBA"), "g.webp": photo, "h.tif": photo, "i.jpg": photo.convert("L"),
             "e.png": Image.fromarray(rng.integers(0, 65535, (30, 40), dtype=np.uint16))}
    for name, image in files.items():
        image.save(tmp_path / name)
        pil = read_image(tmp_path / name, "pil")
        fast = read_image(tmp_path / name, "fast")
        assert isinstance(pil, Image.Image) and pil.mode == "RGB"
        if name == "e.png":  # 16-bit: left to PIL, so that training sees what evaluation sees
            assert isinstance(fast, Image.Image)
            continue
        assert fast.dtype == torch.uint8 and fast.shape == (3, 30, 40), name
        np.testing.assert_array_equal(fast.permute(1, 2, 0).numpy(), np.asarray(pil), err_msg=name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    for backend in BACKENDS:
        with pytest.raises(FcamError, match="broken.jpg"):
            read_image(tmp_path / "broken.jpg", backend)
        with pytest.raises(FcamError, match="missing.jpg"):
            read_image(tmp_path / "missing.jpg", backend)


def test_fast_decoding_ignores_exif_orientation_as_pil_does(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees": neither path applies it, the reference does not either
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=95)
    fast = read_image(tmp_path / "r.jpg", "fast")
    assert fast.shape == (3, 20, 30)
    np.testing.assert_array_equal(fast.permute(1, 2, 0).numpy(), np.asarray(read_image(tmp_path / "r.jpg")))


def test_eval_items_ignore_the_train_backend(image_split):
    root, meta = image_split
    items = [WSOLDataset(root, meta, train=False, crop_size=24, train_backend=b)[0]["raw"] for b in BACKENDS]
    torch.testing.assert_close(items[0], items[1], rtol=0, atol=0)


def test_auto_num_workers_follows_the_cores_per_local_rank(monkeypatch):
    assert resolve_num_workers(3) == 3 and resolve_num_workers(0) == 0
    for cores, ranks, expected in [(2, 1, 2), (1, 1, 0), (16, 1, 8), (16, 4, 4), (8, 8, 0), (12, 5, 2)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert resolve_num_workers(-1, ranks) == expected, (cores, ranks)
    with pytest.raises(FcamError, match="'data.num_workers' must be -1"):
        resolve_num_workers(-2)


@pytest.mark.parametrize("train", [False, True])
def test_uint8_items_completed_per_batch_equal_float_items(image_split, train):
    root, meta = image_split
    floats = WSOLDataset(root, meta, train=train, resize_size=20, crop_size=16)
    small = WSOLDataset(root, meta, train=train, resize_size=20, crop_size=16, uint8=True)
    torch.manual_seed(0)
    expected = default_collate([floats[i] for i in range(3)])
    torch.manual_seed(0)
    items = [small[i] for i in range(3)]
    assert items[0]["raw"].dtype == torch.uint8 and "image" not in items[0]
    batch = complete_batch(default_collate(items))
    assert batch["raw"].dtype == batch["image"].dtype == torch.float32
    for key in ("image", "raw"):
        torch.testing.assert_close(batch[key], expected[key], rtol=0, atol=0)
    assert batch["image_id"] == expected["image_id"] and batch["label"].tolist() == expected["label"].tolist()
    loaded = next(iter(UInt8Loader(small, batch_size=3, device="cpu")))
    assert loaded["image"].shape == (3, 3, 16, 16) and loaded["raw"].dtype == torch.float32


def test_items_collate_in_a_loader(image_split):
    root, meta = image_split
    batch = next(iter(DataLoader(WSOLDataset(root, meta, train=False, crop_size=16), batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16)
    assert batch["label"].tolist() == [0, 1, 2]
    assert batch["image_id"] == meta.image_ids


def test_dataset_errors_name_the_image_or_label(image_split):
    root, meta = image_split
    with pytest.raises(FcamError, match="c2/im2.png"):
        WSOLDataset(root, meta, train=False, num_classes=2)
    (root / "c1/im1.png").unlink()
    with pytest.raises(FcamError, match="c1/im1.png"):
        WSOLDataset(root, meta, train=False)[1]
    (root / "c0/im0.png").write_bytes(b"not an image")
    with pytest.raises(FcamError, match="c0/im0.png"):
        WSOLDataset(root, meta, train=False)[0]
