"""Time ``fcam-eval --scoremap-root`` against the literal reference evaluator, boxes and PxAP.

Generates realistic saved maps under ``--workdir`` (224x224 float64 CAM-like maps: smooth
blobs, some noisy, some with holes), CUB-like box metadata and OpenImages-like mask metadata
with instance and ignore PNGs at original image sizes, then for each scale (``--scales``, by
default CUB-test's 5,794 maps and 150 maps):

- ours: the whole ``python -m fcam.cli.eval --scoremap-root ...`` process, start-up, mask
  decoding and report included, on every map of the scale (the fastest of ``--repeats`` runs);
- the reference: :mod:`fcam.metrics.reference` in this process, reading each map and, for PxAP,
  each image's mask PNGs as wsolevaluation does. Its box loop costs ~1 s per map (two contour
  searches per threshold, V1 and V2), so it runs on a random sample of ``--box-sample`` maps and
  its time is scaled linearly to the scale's count (it has no fixed cost worth counting: no
  process start, only per-map work). PxAP's reference runs on every map.

Numbers must be identical: PxAP of the command vs the reference on the same maps, and every box
metric of the command run on the box sample vs the reference on that sample. The ratios
(reference time / our time) go to stdout and, with ``--write-docs``, into the metrics section
of ``docs/benchmarks.md``.

    python scripts/bench_metrics.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fcam.data import load_metadata
from fcam.metrics import reference

from benchmarks_page import PAGE, write_section

BOX_KEYS = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70")
SIZE = 224


# --- data ----------------------------------------------------------------------------------------


def make_map(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A CAM-like 224x224 map in [0, 1] (max exactly 1): bicubic blobs from a 7x7 or 14x14 grid,
    a ring with a hole, or blobs plus pixel noise."""
    low = rng.random((int(rng.choice([7, 14])),) * 2) ** 3
    blobs = cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    if kind == "smooth":
        scoremap = blobs
    elif kind == "holed":
        yy, xx = np.mgrid[:SIZE, :SIZE]
        cy, cx = rng.integers(SIZE // 3, 2 * SIZE // 3, 2)
        radius = np.hypot(yy - cy, xx - cx)
        scoremap = np.exp(-(((radius - SIZE / 5) / (SIZE / 14)) ** 2)) + 0.1 * blobs
    else:
        scoremap = blobs + 0.3 * rng.random((SIZE, SIZE))
    return reference.normalize_scoremap(scoremap)


def region_box(scoremap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A box (224 space) around the part of the map above a random level, jittered by a few pixels."""
    ys, xs = np.nonzero(scoremap >= rng.uniform(0.3, 0.7))
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()]) + rng.integers(-20, 21, 4)
    box = np.clip(box, 0, SIZE - 1)
    return np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])


def generate(workdir: Path, count: int, seed: int) -> None:
    """Maps, CUB-like and OpenImages-like metadata for ``count`` images, and the mask PNGs."""
    rng = np.random.default_rng(seed)
    ids, labels, sizes, boxes, masks = [], [], [], [], []
    for i in range(count):
        image_id = f"test/c{i % 200:03d}/{i:06d}.jpg"
        kind = rng.choice(["smooth", "noisy", "holed"], p=[0.8, 0.1, 0.1])
        scoremap = make_map(kind, rng)
        path = workdir / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
        width, height = (int(v) for v in rng.integers(300, 700, 2))
        ids.append(image_id)
        labels.append(f"{image_id},{i % 200}")
        sizes.append(f"{image_id},{width},{height}")
        scale = np.array([width, height, width, height]) / SIZE
        for _ in range(1 + int(rng.random() < 0.2)):
            x0, y0, x1, y1 = np.minimum((region_box(scoremap, rng) * scale).astype(int), [width - 1, height - 1] * 2)
            boxes.append(f"{image_id},{x0},{y0},{x1},{y1}")
        # Masks at the original size: instances are the map (upsampled) above random levels.
        big = cv2.resize(scoremap, (width, height), interpolation=cv2.INTER_LINEAR)
        stem = image_id[: -len(".jpg")]
        ignore = np.zeros((height, width), np.uint8)
        if rng.random() < 0.5:
            x0, x1 = np.sort(rng.integers(0, width, 2))
            y0, y1 = np.sort(rng.integers(0, height, 2))
            ignore[y0 : y1 + 1, x0 : x1 + 1] = 255
        _write_png(workdir / "masks/OpenImages" / f"{stem}_ignore.png", ignore)
        for k in range(1 + int(rng.random() < 0.3)):
            instance = ((big > rng.uniform(0.3, 0.8)) * 255).astype(np.uint8)
            mask_path = f"{stem}_m{k}.png"
            _write_png(workdir / "masks/OpenImages" / mask_path, instance)
            masks.append(f"{image_id},{mask_path}," + (f"{stem}_ignore.png" if k == 0 else ""))
    for dataset, localization in (("CUB", boxes), ("OpenImages", masks)):
        _write_metadata(workdir / "metadata" / dataset / "test", ids, labels, sizes, localization)


def subset_metadata(workdir: Path, name: str, chosen: list[str]) -> Path:
    """A metadata root holding only the images ``chosen`` (for both datasets)."""
    root = workdir / f"metadata_{name}"
    keep = set(chosen)
    for dataset in ("CUB", "OpenImages"):
        source = workdir / "metadata" / dataset / "test"
        lines = {f: (source / f).read_text().splitlines() for f in ("class_labels.txt", "image_sizes.txt",
                                                                     "localization.txt")}
        _write_metadata(root / dataset / "test", chosen,
                        *([line for line in lines[f] if line.split(",")[0] in keep]
                          for f in ("class_labels.txt", "image_sizes.txt", "localization.txt")))
    return root


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def _write_metadata(folder: Path, ids, labels, sizes, localization) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes),
                        ("localization.txt", localization)):
        (folder / name).write_text("\n".join(lines) + "\n")


# --- timing --------------------------------------------------------------------------------------


@dataclass(order=True)
class Timing:
    """Wall seconds, and CPU seconds of this process plus the children it waited for."""

    wall: float
    cpu: float

    def scaled(self, factor: float) -> Timing:
        return Timing(self.wall * factor, self.cpu * factor)


@contextmanager
def timed():
    """Yields a :class:`Timing` filled in when the block ends."""
    timing = Timing(0.0, 0.0)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield timing
    timing.wall, timing.cpu = time.perf_counter() - wall, _cpu_seconds() - cpu


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_command(workdir: Path, metadata_root: Path, dataset: str, out: Path,
                repeats: int, extra: tuple[str, ...] = ()) -> tuple[Timing, dict]:
    """Wall and CPU time of the whole ``fcam-eval --scoremap-root`` process, workers included (the
    fastest of ``repeats``), and its metrics."""
    command = [sys.executable, "-m", "fcam.cli.eval", "--scoremap-root", str(workdir / "maps"),
               "--metadata-root", str(metadata_root), "--mask-root", str(workdir / "masks"), "--dataset", dataset,
               "--split", "test", "--output", str(out), *extra]
    best = Timing(float("inf"), float("inf"))
    for _ in range(repeats):
        with timed() as timing:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, timing)
    return best, json.loads((out / "metrics.json").read_text())


def reference_boxes(workdir: Path, metadata_root: Path) -> tuple[Timing, dict]:
    """The reference's box metrics and seconds, reading each map as it goes."""
    meta = load_metadata(metadata_root, "CUB", "test")
    with timed() as timing:
        metrics = _reference_boxes(workdir, meta)
    return timing, metrics


def _reference_boxes(workdir: Path, meta) -> dict:
    thresholds = reference.threshold_list(0.001)
    v1 = reference.BoxEvaluator(thresholds, [30, 50, 70], multi_contour=False)
    v2 = reference.BoxEvaluator(thresholds, [30, 50, 70], multi_contour=True)
    for image_id in meta.image_ids:
        scoremap = np.load(workdir / "maps" / f"{image_id}.npy")
        size = meta.sizes[image_id]
        gt = np.array([reference.resize_box(box, size, (SIZE, SIZE)) for box in meta.boxes[image_id]])
        v1.accumulate(scoremap, gt)
        v2.accumulate(scoremap, gt)
    metrics = {"MaxBoxAcc": float(v1.compute()[1]), "MaxBoxAccV2": float(np.average(v2.compute()))}
    metrics.update({f"MaxBoxAccV2_IoU{t}": float(a) for t, a in zip((30, 50, 70), v2.compute())})
    return metrics


def reference_pxap(workdir: Path, metadata_root: Path) -> tuple[Timing, float]:
    """The reference's PxAP and seconds, reading each map and its mask PNGs as it goes."""
    meta = load_metadata(metadata_root, "OpenImages", "test")
    with timed() as timing:
        evaluator = reference.MaskEvaluator(reference.threshold_list(0.001), str(workdir / "masks/OpenImages"))
        for image_id in meta.image_ids:
            paths, ignore = meta.masks[image_id]
            evaluator.accumulate(np.load(workdir / "maps" / f"{image_id}.npy"), paths, ignore)
        pxap = evaluator.compute()
    return timing, pxap


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPUs, Python {platform.python_version()}, OpenCV {cv2.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fcam_bench_metrics")
    parser.add_argument("--scales", default="5794,150", help="numbers of maps to evaluate")
    parser.add_argument("--box-sample", type=int, default=30, help="maps the box reference is timed on, per scale")
    parser.add_argument("--repeats", type=int, default=2, help="runs of the command per measure; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help=f"update the metrics section of {PAGE.name}")
    args = parser.parse_args()

    scales = [int(s) for s in args.scales.split(",")]
    stamp = args.workdir / "generated.json"
    wanted = {"count": max(scales), "seed": args.seed}
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        print(f"generating {max(scales)} maps and masks under {args.workdir} ...", flush=True)
        generate(args.workdir, max(scales), args.seed)
        stamp.write_text(json.dumps(wanted))
    all_ids = load_metadata(args.workdir / "metadata", "CUB", "test").image_ids
    rng = np.random.default_rng(args.seed)
    rows, identical = [], True
    load_start = os.getloadavg()[0]
    print(f"machine: {machine()}; load average at start {load_start:.2f}")
    for count in scales:
        ids = all_ids[:count]
        meta_root = subset_metadata(args.workdir, str(count), ids)
        sample = sorted(rng.choice(count, min(args.box_sample, count), replace=False).tolist())
        sample_root = subset_metadata(args.workdir, f"{count}_sample", [ids[i] for i in sample])
        ours_box, _ = run_command(args.workdir, meta_root, "CUB", args.workdir / f"out_box_{count}", args.repeats)
        _, ours_sample = run_command(args.workdir, sample_root, "CUB", args.workdir / f"out_box_{count}_s", 1)
        ref_sample, ref_sample_metrics = reference_boxes(args.workdir, sample_root)
        box_same = all(ours_sample[k] == ref_sample_metrics[k] for k in BOX_KEYS)
        ours_mask, ours_mask_metrics = run_command(args.workdir, meta_root, "OpenImages",
                                                   args.workdir / f"out_px_{count}", args.repeats)
        ref_mask, ref_pxap = reference_pxap(args.workdir, meta_root)
        mask_same = ours_mask_metrics["PxAP"] == ref_pxap
        # --mask-cache: the first run decodes the PNGs and fills the cache, the next ones read it.
        cache = args.workdir / f"mask_cache_{count}"
        shutil.rmtree(cache, ignore_errors=True)
        flag = ("--mask-cache", str(cache))
        filling, filled_metrics = run_command(args.workdir, meta_root, "OpenImages", args.workdir / f"out_pxc_{count}",
                                              1, flag)
        warm, warm_metrics = run_command(args.workdir, meta_root, "OpenImages", args.workdir / f"out_pxw_{count}",
                                         args.repeats, flag)
        cache_same = filled_metrics["PxAP"] == warm_metrics["PxAP"] == ref_pxap
        identical &= box_same and mask_same and cache_same
        note = (f"reference timed on {len(sample)} random maps ({ref_sample.wall:.1f} s), scaled "
                f"x{count / len(sample):.1f}")
        rows.append((count, "MaxBoxAcc + MaxBoxAccV2", ours_box, ref_sample.scaled(count / len(sample)), note,
                     box_same))
        rows.append((count, "PxAP", ours_mask, ref_mask, "reference on every map", mask_same))
        rows.append((count, "PxAP, filling `--mask-cache`", filling, ref_mask, "first run with an empty cache",
                     cache_same))
        rows.append((count, "PxAP, warm `--mask-cache`", warm, ref_mask, "masks read from the cache", cache_same))
        for c, name, ours, ref, note, same in rows[-4:]:
            print(f"{c:5d} maps  {name:24s} wall: ours {ours.wall:7.2f} s, reference {ref.wall:8.1f} s, "
                  f"ratio {ref.wall / ours.wall:6.1f}x | CPU: ours {ours.cpu:7.2f} s, reference {ref.cpu:8.1f} s  "
                  f"| identical {same}  ({note})", flush=True)
    load = f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    section = "\n".join([
        "## Metrics: `fcam-eval --scoremap-root` vs the reference evaluator",
        "",
        f"`python scripts/bench_metrics.py --write-docs` on {datetime.date.today().isoformat()}; machine: {machine()};",
        f"load average {load} (the machine is shared: wall times vary with the other jobs).",
        "Ours: the whole `python -m fcam.cli.eval --scoremap-root ...` process (start-up, reading maps and",
        "mask PNGs, report with curves.png), 224x224 maps, 1000 thresholds, default workers (one per CPU).",
        "Reference: `fcam.metrics.reference` (a literal port of wsolevaluation's evaluators) in one process,",
        "reading the same files. Box reference times come from a random sample scaled linearly (no fixed",
        "cost); the box numbers are compared on that sample, PxAP on every map. CPU: user + system seconds",
        "of all processes involved (ours: the command and its workers). `--mask-cache` rows: the same",
        "command keeping the decoded masks on disk; the first run fills the cache, later runs of any",
        "evaluation of the split read it (the reference decodes the PNGs every time).",
        "",
        "| maps | metric | ours wall (s) | reference wall (s) | ratio (wall) | ours CPU (s) | reference CPU (s) "
        "| identical numbers | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {c} | {name} | {o.wall:.2f} | {r.wall:.1f} | **{r.wall / o.wall:.1f}x** | {o.cpu:.2f} | {r.cpu:.1f} | "
          f"{'yes' if same else 'NO'} | {note} |" for c, name, o, r, note, same in rows),
    ])
    if args.write_docs:
        write_section("bench_metrics", section)
        print(f"updated {PAGE}")
    print(f"all numbers identical: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
