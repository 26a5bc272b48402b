"""Images per second of one DataLoader worker, through the protocol's training and evaluation
transforms, for the PIL pipeline the project had (wsolevaluation's) and the 'fast' training path.

Input: ``--num-images`` CUB-like photographs (500x375 JPEG, quality 90: random crops, flips and
colour changes of scikit-image's bundled photographs) written once under ``--data``. Each
pipeline decodes a file and returns the normalized and raw 224x224 tensors (training: resize to
256x256, random crop 224, flip; evaluation: resize to 224x224):

  before      PIL decode + PIL bilinear resize, normalized float image and float raw image
              sent by the worker, as ``fcam.data`` did before (wsolevaluation's pixels);
  pil         PIL decode and resize, the uint8 image sent by the worker and made float and
              normalized after collation (evaluation always, training with
              data.train_backend=pil);
  fast        OpenCV decode + torchvision's antialiased bilinear resize, uint8 sent
              (training with data.train_backend=fast, the default).

Two figures per pipeline: the item cost in one process (torch and OpenCV on one thread, as in a
worker; each image's fastest of ``--repeats`` runs), and a DataLoader with one worker process
and batch 32 over ``--passes`` passes, timed after its first batch (fastest of ``--repeats``
runs): collation, the transfer to the main process and there the completion of uint8 batches
(on the CPU here; on the GPU in training) included. Pipelines are timed in turn, so
other jobs on the machine weigh on all alike. Pixel differences against the PIL pipeline are
computed on every image.

    python scripts/bench_data.py --num-images 200 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import PIL
import skimage.data
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fcam.data import WSOLDataset, load_metadata
from fcam.data.dataset import read_image
from fcam.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairedTransform, resize_square
from fcam.engine.loaders import UInt8Loader
from fcam.engine.scoring import available_cpus, cpu_model

from benchmarks_page import write_section

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat")
SECTION = "## Data pipeline (scripts/bench_data.py)"
TARGET_RATE = 1000.0


def write_photos(folder: Path, count: int, seed: int = 0) -> None:
    """CUB-like JPEGs and a one-split metadata folder (``metadata/Bench/train``) for them."""
    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    ids = []
    for index in range(count):
        photo = photos[index % len(photos)]
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, -1)
        height, width = photo.shape[:2]
        scale = rng.uniform(0.45, 1.0)
        h, w = int(height * scale), int(min(width, height * scale * 4 / 3))
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        crop = photo[y:y + h, x:x + w, :3].astype(np.float32)
        crop = crop * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 3, crop.shape)
        image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((500, 375), Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image_id = f"c{index % 10:02d}/photo_{index:04d}.jpg"
        (folder / "images/Bench" / image_id).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / "images/Bench" / image_id, quality=90)
        ids.append(image_id)
    meta = folder / "metadata/Bench/train"
    meta.mkdir(parents=True, exist_ok=True)
    files = {"image_ids": ids, "class_labels": [f"{i},{n % 10}" for n, i in enumerate(ids)],
             "image_sizes": [f"{i},500,375" for i in ids], "localization": [f"{i},100,80,399,299" for i in ids]}
    for name, lines in files.items():
        (meta / f"{name}.txt").write_text("\n".join(lines))


class BeforeDataset(Dataset):
    """The pipeline as it was before the fast path: PIL decode, torchvision's PIL resize,
    ``np.asarray(...).copy()``, normalization with temporaries."""

    def __init__(self, root: Path, image_ids: list[str], train: bool) -> None:
        self.root, self.image_ids, self.train = root, image_ids, train
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.root / self.image_ids[index]) as file:
            image = file.convert("RGB")
        side = 256 if self.train else 224
        image = TF.resize(image, [side, side])
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.train:
            top, left = torch.randint(0, side - 224 + 1, (2,)).tolist()
            pixels = pixels[:, top:top + 224, left:left + 224]
            if torch.rand(()).item() < 0.5:
                pixels = pixels.flip(-1)
        raw = pixels.float()
        return {"image": (raw / 255.0 - self.mean) / self.std, "raw": raw.contiguous(), "index": index}


def datasets(folder: Path) -> dict[str, Dataset]:
    meta = load_metadata(folder / "metadata", "Bench", "train")
    root = folder / "images/Bench"
    return {
        "train before": BeforeDataset(root, meta.image_ids, train=True),
        "train pil": WSOLDataset(root, meta, train=True, train_backend="pil", uint8=True),
        "train fast": WSOLDataset(root, meta, train=True, train_backend="fast", uint8=True),
        "eval before": BeforeDataset(root, meta.image_ids, train=False),
        "eval pil": WSOLDataset(root, meta, train=False, uint8=True),
        "eval fast (not used)": FastEval(root, meta.image_ids),
    }


class FastEval(Dataset):
    """The fast path under the evaluation transform: measured to show what it would gain."""

    def __init__(self, root: Path, image_ids: list[str]) -> None:
        self.root, self.image_ids = root, image_ids
        self.transform = PairedTransform(train=False)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict:
        return {"raw": self.transform.pixels(read_image(self.root / self.image_ids[index], "fast")), "index": index}


def item_seconds(dataset: Dataset) -> np.ndarray:
    """Seconds of each item, computed in this process (one thread, as in a worker)."""
    seconds = np.empty(len(dataset))
    for index in range(len(dataset)):
        start = time.perf_counter()
        dataset[index]
        seconds[index] = time.perf_counter() - start
    return seconds


def loader_rate(dataset: Dataset, batch_size: int, passes: int) -> float:
    """Images per second of a one-worker DataLoader over ``passes`` passes, after its first
    batch (start-up excluded)."""
    indices = list(range(len(dataset))) * passes
    kind = DataLoader if isinstance(dataset, BeforeDataset) else UInt8Loader
    loader = kind(dataset, batch_size=batch_size, sampler=indices, num_workers=1)
    iterator = iter(loader)
    next(iterator)
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["index"])
    return count / (time.perf_counter() - start)


def pixel_differences(folder: Path) -> dict[str, tuple[int, float]]:
    """(max absolute difference, fraction of values that differ) of the fast path vs PIL."""
    meta = load_metadata(folder / "metadata", "Bench", "train")
    stats: dict[str, list] = {"decode": [0, 0, 0], "resize 256 (train)": [0, 0, 0], "resize 224 (eval)": [0, 0, 0]}
    for image_id in meta.image_ids:
        path = folder / "images/Bench" / image_id
        pil, fast = read_image(path, "pil"), read_image(path, "fast")
        pairs = {"decode": (torch.from_numpy(np.array(pil)).permute(2, 0, 1), fast),
                 "resize 256 (train)": (resize_square(pil, 256), resize_square(fast, 256)),
                 "resize 224 (eval)": (resize_square(pil, 224), resize_square(fast, 224))}
        for name, (a, b) in pairs.items():
            diff = (a.int() - b.int()).abs()
            stats[name][0] = max(stats[name][0], int(diff.max()))
            stats[name][1] += int((diff > 0).sum())
            stats[name][2] += diff.numel()
    return {name: (m, differing / total) for name, (m, differing, total) in stats.items()}


def machine() -> str:
    return (f"{cpu_model()}, {available_cpus()} cores available; Python "
            f"{platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"Pillow {PIL.__version__}, OpenCV {cv2.__version__}")


def report(rates: dict[str, tuple[float, float]], diffs: dict[str, tuple[int, float]], args) -> str:
    base = {"train": rates["train before"], "eval": rates["eval before"]}
    lines = [SECTION, "",
             f"Measured {datetime.date.today().isoformat()} on {machine()}: {args.num_images} CUB-like 500x375 "
             "JPEGs (quality 90); per pipeline, the item cost in one process (each image's fastest of "
             f"{args.repeats} runs) and a one-worker DataLoader (batch {args.batch_size}, {args.passes} passes, "
             f"after its first batch, fastest of {args.repeats} runs). Ratios are against the PIL pipeline as "
             "it was before the fast path (\"before\", wsolevaluation's pixels). Command: "
             f"`python scripts/bench_data.py --num-images {args.num_images} --repeats {args.repeats} "
             f"--passes {args.passes} --write docs/benchmarks.md`.", "",
             "| pipeline | img/s, one process | ratio | img/s, one-worker DataLoader | ratio |",
             "| --- | --- | --- | --- | --- |"]
    for name, (alone, loader) in rates.items():
        ref = base[name.split()[0]]
        lines.append(f"| {name} | {alone:.0f} | {alone / ref[0]:.2f}x | {loader:.0f} | {loader / ref[1]:.2f}x |")
    lines += ["", "The fast path against PIL, on every image (0..255 scale): " + "; ".join(
        f"{name}: max difference {m}, {100 * fraction:.3f} % of values differ" for name, (m, fraction) in diffs.items())
        + ". Training uses it by default; evaluation keeps PIL, the reference's pixels "
        "(`data.train_backend=pil` gives them to training too).", ""]
    for label, column in (("the item cost in one process", 0), ("the one-worker DataLoader", 1)):
        fast, before = rates["train fast"][column], rates["train before"][column]
        lines.append(f"- A GPU training at {TARGET_RATE:,.0f} img/s needs {math.ceil(TARGET_RATE / fast)} workers "
                     f"with the fast path ({fast:.0f} img/s each) and {math.ceil(TARGET_RATE / before)} with the PIL "
                     f"pipeline ({before:.0f} img/s each), by {label} on this machine's cores.")
    lines += ["", "`data.num_workers: -1` (the configs' value) takes min(8, CPU cores per local rank).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--data", type=Path, default=Path("/tmp/fcam_bench_data"), help="where the JPEGs go")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--passes", type=int, default=3, help="passes over the images per DataLoader run")
    parser.add_argument("--write", type=Path, default=None, help="update this file's data-pipeline section")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    folder = args.data / f"n{args.num_images}"
    if not (folder / "metadata/Bench/train/image_ids.txt").is_file():
        write_photos(folder, args.num_images)
    diffs = pixel_differences(folder)
    pipelines = datasets(folder)
    # Other jobs on the machine only ever slow a run down: keep each image's fastest time in one
    # process, and each DataLoader's fastest run.
    item_best = {name: np.full(len(dataset), np.inf) for name, dataset in pipelines.items()}
    loader_best = dict.fromkeys(pipelines, 0.0)
    for _ in range(args.repeats):
        for name, dataset in pipelines.items():
            torch.manual_seed(0)
            item_best[name] = np.minimum(item_best[name], item_seconds(dataset))
            loader_best[name] = max(loader_best[name], loader_rate(dataset, args.batch_size, args.passes))
    rates = {name: (len(item_best[name]) / item_best[name].sum(), loader_best[name]) for name in pipelines}
    section = report(rates, diffs, args)
    print(section)
    if args.write is not None:
        write_section("bench_data", section, args.write)
        print(f"wrote the section '{SECTION}' of {args.write}")


if __name__ == "__main__":
    main()
