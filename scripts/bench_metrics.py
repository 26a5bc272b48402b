"""Time the fast BoxEvaluator against the per-threshold reference loop on the same maps.

Both compute MaxBoxAcc and MaxBoxAccV2 (IoU 30/50/70) and top-1/5 localization; the script
checks that every number and curve is identical and prints the time per image and the
ratio, for the fast evaluator in one process and in ``--workers`` processes (the reference is
single-threaded by nature). The three are timed in turn ``--repeats`` times and the fastest
run of each counts, which makes the ratios robust to other jobs on the machine.

    python scripts/bench_metrics.py --num-images 8 --size 224 --interval 0.001
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from fcam.metrics import BoxEvaluator, normalize_scoremap, reference


def make_maps(kind: str, num: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """CAM-like maps: bicubic blobs from a 7x7 or 28x28 grid, rings with a hole, or blobs plus noise."""
    maps = []
    for _ in range(num):
        low = rng.random((int(rng.choice([7, 28])),) * 2) ** 3
        blobs = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        if kind == "smooth":
            scoremap = blobs
        elif kind == "holed":
            yy, xx = np.mgrid[:size, :size]
            cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
            radius = np.hypot(yy - cy, xx - cx)
            scoremap = np.exp(-(((radius - size / 5) / (size / 14)) ** 2)) + 0.1 * blobs
        elif kind == "noisy":
            scoremap = blobs + 0.3 * rng.random((size, size))
        else:
            raise ValueError(kind)
        maps.append(normalize_scoremap(scoremap))
    return np.stack(maps)


def make_boxes(scoremap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One GT box around the part of the map above a random level, jittered by a few pixels."""
    ys, xs = np.nonzero(scoremap >= rng.uniform(0.3, 0.7))
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()]) + rng.integers(-25, 26, 4)
    box = np.clip(box, 0, scoremap.shape[0] - 1)
    return np.array([[min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]])


def identical(fast: dict, slow: dict) -> bool:
    if fast.keys() != slow.keys():
        return False
    curves_equal = all(np.array_equal(fast["curves"][k], v) for k, v in slow["curves"].items())
    return curves_equal and all(fast[k] == v for k, v in slow.items() if k != "curves")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=8, help="maps per kind")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--interval", type=float, default=0.001, help="cam_curve_interval")
    parser.add_argument("--kinds", default="smooth,holed,noisy")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes of the fast evaluator")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timings; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    print(f"{'':31}fast ms/img (processes)   speed-up (processes)")
    print(f"{'kind':8} {'images':>6} {'reference s/img':>16} {1:>14} {args.workers:>14} {1:>10} {args.workers:>10}")
    totals = [0.0, 0.0, 0.0]
    all_identical = True
    for kind in args.kinds.split(","):
        maps = make_maps(kind, args.num_images, args.size, rng)
        boxes = [make_boxes(m, rng) for m in maps]
        top1 = rng.random(len(maps)) < 0.7
        top5 = top1 | (rng.random(len(maps)) < 0.5)

        def run_fast(workers: int) -> dict:
            evaluator = BoxEvaluator(cam_curve_interval=args.interval, num_workers=workers)
            for i in range(0, len(maps), args.batch_size):
                part = slice(i, i + args.batch_size)
                evaluator.add(maps[part], boxes[part], top1[part], top5[part])
            return evaluator.compute()

        runs = {
            "reference": lambda: reference.box_accuracy(maps, boxes, top1, top5, cam_curve_interval=args.interval),
            1: lambda: run_fast(1),
            args.workers: lambda: run_fast(args.workers),
        }
        seconds = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                result = run()
                seconds[name] = min(seconds[name], time.perf_counter() - start)
                if name == "reference":
                    slow = result
                else:
                    fast = result
                    all_identical &= identical(fast, slow)
        slow_s, fast_s = seconds["reference"], seconds

        totals[0] += slow_s
        totals[1] += fast_s[1]
        totals[2] += fast_s[args.workers]
        per_image = [slow_s / len(maps), 1e3 * fast_s[1] / len(maps), 1e3 * fast_s[args.workers] / len(maps)]
        print(
            f"{kind:8} {len(maps):6d} {per_image[0]:16.3f} {per_image[1]:14.2f} {per_image[2]:14.2f} "
            f"{slow_s / fast_s[1]:9.1f}x {slow_s / fast_s[args.workers]:9.1f}x"
            f"  (MaxBoxAcc {fast['MaxBoxAcc']:.2f}, V2 {fast['MaxBoxAccV2']:.2f})"
        )
    print(
        f"overall speed-up: {totals[0] / totals[1]:.1f}x with 1 process, {totals[0] / totals[2]:.1f}x with "
        f"{args.workers} processes; all numbers identical: {all_identical}"
    )
    if not all_identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
