"""CPU cost of an F-CAM decoder training step against a classifier training step, and of F-CAM
inference against a classifier forward and Grad-CAM.

Training steps (one process, same backbone, batch and image size, random weights and inputs),
each losses + backward + SGD step in train mode, all terms of the decoder's loss included (dense
CRF with the configured backend): ``classifier``: ``ClassifierTask.losses``; ``decoder before``:
the decoder step as it was, the seed CAM from ``fcam.cams.compute_cams`` (a classifier pass of
its own), then the F-CAM forward on the contiguous input (a second pass); ``decoder, one pass,
contiguous``: the same forward, the seed CAM from its top map (both with the CRF on the vectorised
PyTorch lattice, as they were); ``decoder, vectorised CRF lattice``: ``DecoderTask.losses`` with
that lattice; ``decoder``: ``DecoderTask.losses`` as it is (one pass, channels_last on the CPU,
the CRF on the compiled CPU lattice of ``fcam.losses.permutohedral_cpu``). Inference, per image: a classifier forward,
Grad-CAM (``compute_cams``, upsampled to the image size), the F-CAM forward as it was
(contiguous, BatchNorm unfolded), ``FCAMModel`` now, and its inference copy
(``fcam.models.inference_copy``: BatchNorm folded, channels_last on the CPU; what evaluation runs).

Runs alternate within each repeat, so that a change of load hits them alike; each figure is
the fastest of ``--repeats`` timed calls after one warm-up call.

    python scripts/bench_train.py                       # ResNet18 + ResNet50 steps at 128 px, batch 8
    python scripts/bench_train.py --repeats 3 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import torch

from fcam.cams import compute_cams
from fcam.config import config_from_dict
from fcam.data import generate_synthetic
from fcam.engine.distributed import DistContext
from fcam.engine.loaders import split_metadata
from fcam.engine.scoring import available_cpus, cpu_model
from fcam.engine.seed_cams import seed_cams
from fcam.engine.tasks import ClassifierTask, DecoderTask
from fcam.losses.permutohedral import PermutohedralLattice
from fcam.models import FCAMModel, build_classifier, build_fcam, inference_copy

from benchmarks_page import PAGE, write_section


Batch = dict[str, torch.Tensor]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], help="backbones of the steps")
    parser.add_argument("--image-size", type=int, default=128, help="square input side of the training steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", default="cam", help="cam.method of the seeds (the config's default: cam)")
    parser.add_argument("--infer-backbone", default="resnet50", help="backbone of the inference timings ('' skips)")
    parser.add_argument("--infer-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per run (the fastest counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--write-docs", action="store_true", help=f"update this script's section of {PAGE.name}")
    return parser.parse_args()


def fastest(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest wall seconds of each run over ``repeats`` rounds, after one warm-up round."""
    for run in runs.values():
        run()
    times = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def make_tasks(workdir: Path, backbone: str, args: argparse.Namespace) -> tuple[ClassifierTask, DecoderTask]:
    """Both training tasks on a tiny synthetic dataset (the batches are made here, not loaded)."""
    data = workdir / "data"
    if not (data / "metadata").is_dir():
        generate_synthetic(data, image_size=32, num_classes=2, num_train_per_class=args.batch_size, num_val_per_class=1,
                           num_test_per_class=1, progress=False)
    cfg = config_from_dict({
        "data": {"dataset": "CUB", "root": str(data / "images"), "metadata_root": str(data / "metadata"),
                 "mask_root": str(data / "masks"), "num_workers": 0},
        "model": {"backbone": backbone, "pretrained": "none"},
        "cam": {"method": args.method},
        "train": {"batch_size": args.batch_size}, "fcam": {"batch_size": args.batch_size},
        "device": "cpu",
    }, source="bench_train")
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    train, val = split_metadata(cfg, cfg.data.train_split), split_metadata(cfg, cfg.data.val_split)
    classifier_task = ClassifierTask(cfg, ctx, train, val, args.num_classes)
    decoder_task = DecoderTask(cfg, ctx, train, val, build_classifier(backbone, args.num_classes))
    decoder_task.set_epoch(0)
    return classifier_task, decoder_task


def contiguous_fcam(model: FCAMModel, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The F-CAM forward as it was: contiguous input, the classifier without autograd, then the decoder."""
    with torch.no_grad():
        features, _ = model.classifier.forward_features(images.contiguous())
    return features, model.decoder(features, images.shape[-2:])


def with_vectorised_crf(losses: Callable[[Batch], dict]) -> Callable[[Batch], dict]:
    """``losses`` with the dense CRF on the vectorised PyTorch lattice, as on the CPU before the compiled one."""

    def run(batch: Batch) -> dict:
        with mock.patch("fcam.losses.crf.permutohedral_filter", lambda f, v: PermutohedralLattice(f).filter(v)):
            return losses(batch)

    return run


def earlier_losses(task: DecoderTask, batch: Batch, two_pass: bool) -> dict[str, torch.Tensor]:
    """The decoder step's losses with the contiguous forward: with ``two_pass`` as before this work
    (the seed CAM from ``compute_cams``, a classifier pass of its own), else with one pass (the
    seed CAM from the forward's top map). The rows run it with :func:`with_vectorised_crf`."""
    classifier, images, labels = task.model.classifier, batch["image"], batch["label"]
    if two_pass:
        cams = compute_cams(classifier, images, labels, task.cfg.cam.method, classifier.cam_target_layer,
                            fc=classifier.fc, size=tuple(images.shape[-2:]))
    features, seg_logits = contiguous_fcam(task.model, images)
    if not two_pass:
        cams = seed_cams(classifier, images, labels, features, task.cfg.cam.method)
    seeds = task.seeds(cams, generator=task.generator)
    return {"loss": task.criterion(seg_logits.float(), batch["raw"], seeds)["total"]}


def train_step(task: ClassifierTask | DecoderTask, losses: Callable[[Batch], dict], batch: Batch) -> Callable[[], None]:
    """One optimizer step as the trainer runs it (no AMP on the CPU)."""

    def run() -> None:
        task.optimizer.zero_grad(set_to_none=True)
        losses(batch)["loss"].backward()
        task.optimizer.step()

    return run


def random_batch(batch_size: int, size: int, num_classes: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.randn(batch_size, 3, size, size, generator=generator),
            "raw": torch.rand(batch_size, 3, size, size, generator=generator) * 255,
            "label": torch.randint(0, num_classes, (batch_size,), generator=generator),
            "index": torch.arange(batch_size)}


def step_rows(workdir: Path, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for backbone in args.backbones:
        classifier_task, decoder_task = make_tasks(workdir, backbone, args)
        classifier_task.model.train()
        decoder_task.model.train()
        batch = random_batch(args.batch_size, args.image_size, args.num_classes)
        times = fastest({
            "classifier": train_step(classifier_task, classifier_task.losses, batch),
            "decoder before (two passes)": train_step(decoder_task, with_vectorised_crf(
                partial(earlier_losses, decoder_task, two_pass=True)), batch),
            "decoder, one pass, contiguous": train_step(decoder_task, with_vectorised_crf(
                partial(earlier_losses, decoder_task, two_pass=False)), batch),
            "decoder (DecoderTask.losses), vectorised CRF lattice": train_step(
                decoder_task, with_vectorised_crf(decoder_task.losses), batch),
            "decoder (DecoderTask.losses)": train_step(decoder_task, decoder_task.losses, batch),
        }, args.repeats)
        base = times["classifier"]
        for name, seconds in times.items():
            rows.append([f"{backbone} {args.image_size} px, batch {args.batch_size}", f"{name} step",
                         f"{1000 * seconds:.0f}", f"{seconds / base:.2f}x"])
    return rows


def inference_rows(args: argparse.Namespace) -> list[list[str]]:
    size, b = args.infer_size, args.batch_size
    torch.manual_seed(0)
    model = build_fcam(build_classifier(args.infer_backbone, args.num_classes)).eval()
    classifier = model.classifier
    fast = inference_copy(model)
    batch = random_batch(b, size, args.num_classes)
    images, labels = batch["image"], batch["label"]

    @torch.no_grad()
    def forward() -> torch.Tensor:
        return classifier(images)

    def fcam_maps(seg_logits: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        return torch.no_grad()(lambda: torch.softmax(seg_logits(), dim=1)[:, 1])

    times = fastest({
        "classifier forward": forward,
        "Grad-CAM (compute_cams)": lambda: compute_cams(classifier, images, labels, "gradcam",
                                                         classifier.cam_target_layer, size=(size, size)),
        "F-CAM before (contiguous, BatchNorm unfolded)": fcam_maps(lambda: contiguous_fcam(model, images)[1]),
        "F-CAM, FCAMModel.eval()": fcam_maps(lambda: model(images)["seg_logits"]),
        "F-CAM (inference_copy, what evaluation runs)": fcam_maps(lambda: fast(images)["seg_logits"]),
    }, args.repeats)
    forward, gradcam = times["classifier forward"], times["Grad-CAM (compute_cams)"]
    return [[f"{args.infer_backbone} {size} px, batch {b}", name, f"{1000 * s / b:.0f}", f"{s / forward:.2f}x",
             f"{s / gradcam:.2f}x"] for name, s in times.items()]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def machine() -> str:
    return (f"{cpu_model()}, {available_cpus()} CPUs, {torch.get_num_threads()} torch thread(s), "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        steps = table(["setting", "run", "ms", "vs classifier step"], step_rows(Path(workdir), args))
    print(steps)
    inference = ""
    if args.infer_backbone:
        inference = table(["setting", "run", "ms / image", "vs classifier forward", "vs Grad-CAM"],
                          inference_rows(args))
        print(inference)
    load_end = os.getloadavg()[0]
    section = "\n".join([
        "## Training step and inference cost (scripts/bench_train.py)",
        "",
        f"`python scripts/bench_train.py --repeats {args.repeats} --write-docs` on "
        f"{datetime.date.today().isoformat()}; machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{load_end:.1f} at the end (shared machine: figures move with the other jobs). Random weights and "
        f"inputs, {args.num_classes} classes, seeds from `{args.method}`; fastest of {args.repeats} calls after a "
        "warm-up. `decoder before`: the step as it was (the seed CAM from `compute_cams`, a classifier pass of "
        "its own, then the F-CAM forward); `one pass, contiguous`: the seed CAM from the forward's top map "
        "(both with the dense CRF on the vectorised PyTorch lattice, as they were); `vectorised CRF lattice`: "
        "the step now but for that lattice; `DecoderTask.losses`: the step now (one pass, channels_last input "
        "on the CPU, the CRF on the compiled hash-table lattice). Every decoder step "
        "includes the whole loss (partial CE, dense CRF, size). Inference: `before` is the F-CAM forward as "
        "it was (contiguous, BatchNorm unfolded); evaluation runs `inference_copy` (BatchNorm folded, "
        "channels_last on the CPU).",
        "",
        steps,
        "",
        *([inference, ""] if inference else []),
    ]).rstrip("\n")
    if args.write_docs:
        write_section("bench_train", section)
        print(f"updated {PAGE}")


if __name__ == "__main__":
    main()
