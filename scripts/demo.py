"""The end-to-end demo on CPU-sized synthetic data, through the real commands, over several seeds.

``fcam-synth`` writes the same images in CUB's layout (boxes) and OpenImages' (masks). For each
seed (``--seeds``, three by default) the demo trains a ResNet18 WSOL classifier from scratch and
the F-CAM decoder from its CAM seeds (model selection on the box validation split), then evaluates
the six one-pass CAM methods and F-CAM on the test split of both layouts (Score-CAM, K forward
passes per image, is left out). ``runs/demo/report.md`` gets each
seed's CAM and F-CAM figures, the mean ± std of every method over the seeds (``fcam-results``), the
machine it ran on and the first seed's figures. Run it with ``bash scripts/demo.sh``.

A seed fixes every random draw, so a rerun on the same machine with the same number of threads
gives the same numbers; another CPU sums floats in another order and trains other models, which
is why the demo reports several seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fcam.cams.registry import ONE_PASS_CAM_METHODS
from fcam.engine.results import write_results

ROOT = Path(__file__).resolve().parents[1]
METHODS = (*ONE_PASS_CAM_METHODS, "fcam")
# dataset layout -> (annotation kind, headline metric, columns of the mean ± std table)
LAYOUTS = {"CUB": ("boxes", "MaxBoxAcc", ["MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "cls_acc"]),
           "OpenImages": ("masks", "PxAP", ["PxAP"])}


def run(step: str, *args: str) -> float:
    """Run one fcam command as a user would, streaming its progress; returns its seconds."""
    print(f"\n== {step}: python -m {' '.join(args)}", flush=True)
    started = time.time()
    subprocess.run([sys.executable, "-m", *args], check=True, cwd=ROOT)
    seconds = time.time() - started
    print(f"== {step}: done in {seconds:.0f}s", flush=True)
    return seconds


def machine() -> str:
    """CPU model, cores, Python and torch versions, threads: what a reader needs to compare runs."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return (f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def run_seed(seed: int, out: Path, config: list[str], where: list[str], times: dict[str, float]) -> None:
    """Train the classifier and the decoder of one seed and evaluate every method on both layouts."""
    seeded = [*config, f"train.seed={seed}"]
    times[f"seed {seed}: classifier"] = run(f"seed {seed}: train classifier", "fcam.cli.train_cls", *seeded,
                                            "--output", str(out / "classifier"), "--overwrite")
    times[f"seed {seed}: decoder"] = run(f"seed {seed}: train F-CAM decoder", "fcam.cli.train_decoder", *seeded,
                                         "--classifier", str(out / "classifier/best.pt"),
                                         "--output", str(out / "fcam"), "--overwrite")
    for dataset, (kind, _, _) in LAYOUTS.items():
        times[f"seed {seed}: eval {kind}"] = run(
            f"seed {seed}: evaluate on {kind}", "fcam.cli.eval", "--checkpoint", str(out / "classifier/best.pt"),
            "--decoder", str(out / "fcam/best.pt"), "--method", *METHODS, "--split", "test",
            "--visualize", "8", "--output", str(out / f"eval_{kind}"), *where, f"data.dataset={dataset}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/demo", help="demo folder (default runs/demo)")
    parser.add_argument("--data", default="data/synth", help="synthetic dataset folder (default data/synth)")
    parser.add_argument("--config", default="configs/synth.yaml", help="config (default configs/synth.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds, one classifier and one decoder each (default 0 1 2)")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    out, data = ROOT / args.output, ROOT / args.data
    started = time.time()
    times: dict[str, float] = {}
    if not (data / "synth.json").exists():
        times["generate data"] = run("generate data", "fcam.cli.synth", str(data))
    where = ["--set", f"data.root={data / 'images'}", f"data.metadata_root={data / 'metadata'}",
             f"data.mask_root={data / 'masks'}"]
    config = ["--config", args.config, *where]
    for seed in args.seeds:
        run_seed(seed, out / f"seed_{seed}", config, where, times)
    report = out / "report.md"
    body = [per_seed(out, args.seeds)]
    for dataset, (kind, _, columns) in LAYOUTS.items():
        table = write_results([out / f"seed_{s}" / f"eval_{kind}" for s in args.seeds], out / f"results_{kind}",
                              metric_keys=columns)
        body.append(f"## {dataset} layout ({kind}): mean ± std over {len(args.seeds)} seeds\n\n{table.markdown()}")
    body.append(figures(out / f"seed_{args.seeds[0]}", args.seeds[0], out))
    report.write_text(header(time.time() - started, times, args.seeds) + "\n".join(body))
    print(f"\nwrote {report} ({(time.time() - started) / 60:.1f} min in all)")
    return 0


def per_seed(out: Path, seeds: list[int]) -> str:
    """Each seed's CAM and F-CAM on boxes and masks, the gains, and their mean ± std."""
    lines = ["## CAM and F-CAM, seed by seed\n",
             "| seed | cls_acc | CAM MaxBoxAcc | F-CAM MaxBoxAcc | gain | CAM PxAP | F-CAM PxAP | gain |",
             "| --- |" + " --- |" * 7]
    gains: dict[str, list[float]] = {"MaxBoxAcc": [], "PxAP": []}
    for seed in seeds:
        cells = []
        for kind, key in (("boxes", "MaxBoxAcc"), ("masks", "PxAP")):
            cam, fcam = (json.loads((out / f"seed_{seed}" / f"eval_{kind}" / m / "metrics.json").read_text())
                         for m in ("cam", "fcam"))
            gains[key].append(fcam[key] - cam[key])
            cells += [f"{cam[key]:.2f}", f"{fcam[key]:.2f}", f"{fcam[key] - cam[key]:+.2f}"]
            accuracy = cam["cls_acc"] if kind == "boxes" else None
            if accuracy is not None:
                cells.insert(0, f"{accuracy:.2f}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    summary = []
    for key, values in gains.items():
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        wins = sum(v > 0 for v in values)
        summary.append(f"{key} gain {statistics.mean(values):+.2f}{spread} (F-CAM ahead on {wins}/{len(values)} seeds)")
    return "\n".join(lines) + "\n\nF-CAM vs the CAM it was trained from: " + "; ".join(summary) + ".\n"


def figures(folder: Path, seed: int, out: Path) -> str:
    lines = [f"## Figures (seed {seed})\n"]
    for kind in ("boxes", "masks"):
        names = [("fcam/examples.png", "F-CAM examples"), ("cam/examples.png", "CAM examples"),
                 ("histograms.png", "activation histograms")]
        if kind == "boxes":
            names.insert(2, ("threshold_sensitivity.png", "threshold sensitivity"))
        lines += [f"![{kind}: {title}]({(folder / f'eval_{kind}' / name).relative_to(out)})\n" for name, title in names]
    return "\n".join(lines)


def header(seconds: float, times: dict[str, float], seeds: list[int]) -> str:
    steps = ", ".join(f"{name} {t:.0f}s" for name, t in times.items())
    return ("# fcam demo report\n\n"
            "Synthetic WSOL data from `fcam-synth` (textured objects on photographs, whose class shows only "
            "in a small part; distractors; one to three instances), ResNet18 WSOL classifier trained from "
            "scratch on the CPU, F-CAM decoder trained from its CAM seeds with the dense CRF loss and the size "
            f"constraint; seeds {', '.join(map(str, seeds))}. Test split, maps scored at the config's "
            "`data.eval_size`.\n\n"
            f"Machine: {machine()}. Same machine and thread count, same numbers; another machine trains "
            "other models (float sums in another order), hence the seeds.\n\n"
            f"Total {seconds / 60:.1f} min ({steps}).\n\n")


if __name__ == "__main__":
    sys.exit(main())
