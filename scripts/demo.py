"""The end-to-end demo on CPU-sized synthetic data, through the real commands, over several seeds.

``fcam-synth`` writes the same images in CUB's layout (boxes) and OpenImages' (masks). For each
seed (``--seeds``, three by default) the demo trains a ResNet18 WSOL classifier from scratch and
the F-CAM decoder from its CAM seeds (model selection on the box validation split), then evaluates
F-CAM and the five CAM methods computed from the classifier's top map (CAM, Grad-CAM, Grad-CAM++,
XGrad-CAM, LayerCAM) on the test split of both layouts; Smooth-Grad-CAM++ (four noisy passes per
image) and Score-CAM (one pass per channel) are left out for time; ``fcam-eval`` has them.
``runs/demo/report.md`` gets each seed's CAM and F-CAM figures, the mean ± std of every method over
the seeds (``fcam-results``), the machine it ran on and the first seed's figures. Run it with
``bash scripts/demo.sh``.

The commands run as parallel processes (``--jobs``, one per CPU by default) of ``--threads`` torch
threads each (CPUs / jobs: one on a 2-CPU machine): on a small CPU, two one-thread trainings side by
side get through about 1.2x the work of one two-thread training (docs/recipe.md §8). A seed fixes
every random draw, so a rerun on the same machine with the same number of threads per run gives the
same numbers, whatever the number of parallel runs; another CPU sums floats in another order and
trains other models, which is why the demo reports several seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from fcam.cams.registry import TOP_MAP_CAM_METHODS
from fcam.engine.scoring import available_cpus, cpu_model
from fcam.engine.results import write_results

ROOT = Path(__file__).resolve().parents[1]
METHODS = (*TOP_MAP_CAM_METHODS, "fcam")
# dataset layout -> (annotation kind, headline metric, columns of the mean ± std table)
LAYOUTS = {"CUB": ("boxes", "MaxBoxAcc", ["MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "cls_acc"]),
           "OpenImages": ("masks", "PxAP", ["PxAP"])}


@dataclass(frozen=True)
class Step:
    """One fcam command of the demo: ``python -m ARGS``, its log file and the steps it waits for."""

    name: str
    args: tuple[str, ...]
    log: Path
    after: tuple[str, ...] = ()


def run_steps(steps: list[Step], jobs: int, threads: int) -> dict[str, float]:
    """Run ``steps`` as ``jobs`` parallel processes of ``threads`` torch threads each; returns their seconds.

    A step starts once the steps it waits for are done, the first ready one in list order first.
    Each writes its progress to its log; a failing step stops the others and names its log.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    processes: list[subprocess.Popen] = []
    lock, stopping = threading.Lock(), threading.Event()
    started = time.time()

    def execute(step: Step) -> float:
        step.log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{(time.time() - started) / 60:4.1f} min] {step.name}: started (log {step.log})", flush=True)
        began = time.time()
        with step.log.open("w") as log:
            with lock:  # no process starts once the others are being stopped
                if stopping.is_set():
                    raise RuntimeError(f"{step.name} not started: another step failed")
                process = subprocess.Popen([sys.executable, "-m", *step.args], cwd=ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT)
                processes.append(process)
            if process.wait() != 0:
                raise RuntimeError(f"{step.name} failed (exit status {process.returncode}); see {step.log}")
        seconds = time.time() - began
        print(f"[{(time.time() - started) / 60:4.1f} min] {step.name}: done in {seconds:.0f}s", flush=True)
        return seconds

    pending, running, times = list(steps), {}, {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            while pending or running:
                ready = [step for step in pending if all(name in times for name in step.after)]
                for step in ready[:jobs - len(running)]:
                    pending.remove(step)
                    running[pool.submit(execute, step)] = step
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    times[running.pop(future).name] = future.result()
        except BaseException:
            with lock:
                stopping.set()
                for process in processes:
                    if process.poll() is None:
                        process.terminate()
            raise
    return times


def machine(jobs: int, threads: int) -> str:
    """CPU model, cores, Python and torch versions, processes and threads: what a reader needs to compare runs."""
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} CPUs, {jobs} parallel run(s) of {threads} torch thread(s) each, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def seed_steps(seed: int, out: Path, config: list[str], where: list[str], visualize: int) -> list[Step]:
    """Train the classifier and the decoder of one seed and evaluate every method on both layouts."""
    seeded = [*config, f"train.seed={seed}"]
    logs = out / "logs"
    classifier = Step(f"seed {seed}: classifier", ("fcam.cli.train_cls", *seeded, "--output", str(out / "classifier"),
                                                   "--overwrite"), logs / "classifier.log")
    decoder = Step(f"seed {seed}: decoder", ("fcam.cli.train_decoder", *seeded, "--classifier",
                                             str(out / "classifier/best.pt"), "--output", str(out / "fcam"),
                                             "--overwrite"), logs / "decoder.log", (classifier.name,))
    evals = [Step(f"seed {seed}: eval {kind}", ("fcam.cli.eval", "--checkpoint", str(out / "classifier/best.pt"),
                                                "--decoder", str(out / "fcam/best.pt"), "--method", *METHODS,
                                                "--split", "test", "--visualize", str(visualize), "--output",
                                                str(out / f"eval_{kind}"), *where, f"data.dataset={dataset}"),
                  logs / f"eval_{kind}.log", (decoder.name,))
             for dataset, (kind, _, _) in LAYOUTS.items()]
    return [classifier, decoder, *evals]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/demo", help="demo folder (default runs/demo)")
    parser.add_argument("--data", default="data/synth", help="synthetic dataset folder (default data/synth)")
    parser.add_argument("--config", default="configs/synth.yaml", help="config (default configs/synth.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds, one classifier and one decoder each (default 0 1 2)")
    cpus = available_cpus()
    parser.add_argument("--jobs", type=int, default=None,
                        help="commands run in parallel (default: one per CPU, at most one per seed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of each command (default: $OMP_NUM_THREADS if set, else CPUs / jobs)")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    jobs = args.jobs or min(cpus, len(args.seeds))
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, cpus // jobs)
    if jobs < 1 or threads < 1:
        parser.error(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")
    out, data = ROOT / args.output, ROOT / args.data
    started = time.time()
    times: dict[str, float] = {}
    if not (data / "synth.json").exists():
        times.update(run_steps([Step("generate data", ("fcam.cli.synth", str(data)), out / "logs" / "synth.log")],
                               1, threads))
    where = ["--set", f"data.root={data / 'images'}", f"data.metadata_root={data / 'metadata'}",
             f"data.mask_root={data / 'masks'}"]
    config = ["--config", args.config, *where]
    # Figures are drawn for the first seed only (the report shows those). Classifiers first, then
    # decoders, then evaluations: the longest steps start first, which keeps the parallel runs busy.
    per_seed_steps = [seed_steps(seed, out / f"seed_{seed}", config, where, 8 if seed == args.seeds[0] else 0)
                      for seed in args.seeds]
    steps = [step for stage in zip(*per_seed_steps) for step in stage]
    print(f"{len(steps)} steps on {jobs} parallel run(s) of {threads} torch thread(s) each; "
          f"each step's progress is in its log under {out}/seed_*/logs/", flush=True)
    times.update(run_steps(steps, jobs, threads))
    report = out / "report.md"
    body = [per_seed(out, args.seeds)]
    for dataset, (kind, _, columns) in LAYOUTS.items():
        table = write_results([out / f"seed_{s}" / f"eval_{kind}" for s in args.seeds], out / f"results_{kind}",
                              metric_keys=columns)
        body.append(f"## {dataset} layout ({kind}): mean ± std over {len(args.seeds)} seeds\n\n{table.markdown()}")
    body.append(figures(out / f"seed_{args.seeds[0]}", args.seeds[0], out))
    report.write_text(header(time.time() - started, times, args.seeds, jobs, threads) + "\n".join(body))
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


def header(seconds: float, times: dict[str, float], seeds: list[int], jobs: int, threads: int) -> str:
    steps = ", ".join(f"{name} {t:.0f}s" for name, t in times.items())
    return ("# fcam demo report\n\n"
            "Synthetic WSOL data from `fcam-synth` (textured objects on photographs, whose class shows only "
            "in a small part; distractors; one to three instances), ResNet18 WSOL classifier trained from "
            "scratch on the CPU, F-CAM decoder trained from its CAM seeds with the dense CRF loss and the size "
            f"constraint; seeds {', '.join(map(str, seeds))}. Test split, maps scored at the config's "
            "`data.eval_size`.\n\n"
            f"Machine: {machine(jobs, threads)}. Same machine and thread count, same numbers; another machine trains "
            "other models (float sums in another order), hence the seeds.\n\n"
            f"Total {seconds / 60:.1f} min ({steps}).\n\n")


if __name__ == "__main__":
    sys.exit(main())
