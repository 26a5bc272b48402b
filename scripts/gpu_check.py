"""Check a CUDA machine for fcam and print the result as a Markdown table.

    bash scripts/gpu_check.sh [REPORT.md]                  # a CUDA machine: about 5 minutes on one GPU
    python scripts/gpu_check.py --cpu-smoke [REPORT.md]    # the same code paths on the CPU, tiny sizes

Each check prints PASS or FAIL with its figure as it runs; a check that raises is reported as a
FAIL with the error and the others still run.

- Parity of the device against the CPU on the same inputs: the six CAM methods of
  ``fcam.cams.compute_cams`` (random-init WSOL ResNet50, BatchNorm statistics of the batch, TF32
  off), the seed regions of ``fcam.losses.SeedSampler`` from the same CAMs (the sampled pixels
  follow each device's random generator, which differ: they are checked to lie in their regions),
  the dense CRF loss and its gradient with both backends (two device runs, since scatter-adds are
  not deterministic on CUDA), and ``BoxEvaluator`` / ``MaskEvaluator`` fed the maps of each device.
- AMP training: ``fcam-train-cls`` then ``fcam-train-decoder``, one epoch each on ``fcam-synth --tiny``
  data with ``train.amp=true``; every logged loss must be finite.
- ``torchrun --nproc_per_node=1``: ``fcam.cli.train_cls`` and ``fcam.cli.eval``. A world of one
  process forms no process group in fcam, so NCCL (gloo on the CPU) is checked apart: a one-rank
  group, an all-reduce and an AMP training step of a DistributedDataParallel classifier.
- Throughput (img/s) and peak GPU memory of a classifier training step, a decoder training step
  (CAM seeds, partial cross-entropy, CRF) and CAM evaluation for ResNet50, VGG16 and InceptionV3
  at 224 px, batch 32, AMP off and on; the permutohedral CRF loss in ms per image.

The table and a line describing the machine go to stdout and to REPORT.md (default
gpu_check.md). Exit status 1 when a check fails. Without a CUDA device and without
``--cpu-smoke`` the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("resnet50", "vgg16", "inceptionv3")
NUM_CLASSES = 10
CAM_TOLERANCE = 1e-3  # max |map_cpu - map_device| of maps in [0, 1], float32 without TF32
CRF_TOLERANCE = 1e-3  # relative error of the CRF loss and gradient (float32 sums in another order)
PXAP_TOLERANCE = 0.05  # PxAP points, allowed only when some scores fall in another histogram bin
NO_DEVICE = "no CUDA device: GPU checks not run"


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: the full check on a CUDA device, tiny ones for ``--cpu-smoke``."""

    device: torch.device
    parity_size: int  # image side of the CAM, seed, evaluator and permutohedral CRF parity checks
    parity_batch: int
    crf_exact_size: int  # the exact CRF is O(N^2): its parity runs at a smaller side
    bench_size: int
    bench_batch: int
    warmup: int
    iterations: int
    curve_interval: float
    synth_args: tuple[str, ...]  # fcam-synth flags
    train_overrides: tuple[str, ...]  # --set overrides of configs/synth.yaml for the commands


def settings(cpu_smoke: bool) -> Settings:
    if cpu_smoke:
        tiny = ("data.resize_size=40", "data.crop_size=32", "data.eval_size=32", "train.batch_size=8",
                "fcam.batch_size=8", "train.eval_batch_size=16", "data.num_workers=0", "eval.cam_curve_interval=0.01")
        return Settings(torch.device("cpu"), 32, 2, 16, 32, 2, 0, 1, 0.01, ("--tiny", "--image-size", "48"), tiny)
    device = torch.device("cuda", torch.cuda.current_device())
    return Settings(device, 224, 4, 64, 224, 32, 3, 10, 0.001, ("--tiny",), ("data.num_workers=4",))


@dataclass(frozen=True)
class Result:
    check: str
    passed: bool
    figure: str
    detail: str = ""


class Report:
    """The results so far; each one is printed as it arrives."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def add(self, check: str, passed: bool, figure: str, detail: str = "") -> None:
        self.results.append(Result(check, bool(passed), figure, detail))
        print(f"{'PASS' if passed else 'FAIL'}  {check}: {figure}", flush=True)

    def run(self, check: str, body: Callable[[], None]) -> None:
        """Run ``body`` (which adds its own results); an exception becomes one FAIL named ``check``."""
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next check runs
            self.add(check, False, f"error: {type(exc).__name__}: {first_line(exc)}")

    @property
    def failed(self) -> bool:
        return any(not r.passed for r in self.results)

    def markdown(self, machine: str, command: str, seconds: float) -> str:
        passed = sum(r.passed for r in self.results)
        lines = ["# fcam GPU check", "", machine, "",
                 f"`{command}`: {passed} of {len(self.results)} checks passed in {seconds:.0f} s.", "",
                 "| check | result | figure | detail |", "| --- | --- | --- | --- |"]
        for r in self.results:
            status = "PASS" if r.passed else "**FAIL**"
            lines.append(f"| {cell(r.check)} | {status} | {cell(r.figure)} | {cell(r.detail)} |")
        return "\n".join(lines) + "\n"


class Once:
    """A value made on first use; a failure is kept and raised again to every later user."""

    def __init__(self, make: Callable[[], object]) -> None:
        self._make = make
        self._done = False
        self._value: object = None
        self._error: Exception | None = None

    def get(self):
        if not self._done:
            self._done = True
            try:
                self._value = self._make()
            except Exception as exc:  # noqa: BLE001 - re-raised below, to each check that needs it
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine_line(device: torch.device) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if device.type == "cuda":
        return (f"machine: {torch.cuda.get_device_name(device)}, driver {nvidia_driver()}, "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                f"torch {torch.__version__}, {now}")
    return (f"machine: CPU only (--cpu-smoke), {os.cpu_count()} cores, {platform.platform()}, "
            f"torch {torch.__version__}, {now}")


def nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    versions = out.stdout.split()
    return versions[0] if out.returncode == 0 and versions else "unknown"


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Full float32 convolutions and matmuls (no TF32) for parity, restored afterwards."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, amp: bool):
    """fcam's AMP: float16 autocast on CUDA only (the CPU runs the same code with it disabled)."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


def training_step(loss_of_batch: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer,
                  device: torch.device, amp: bool) -> Callable[[], torch.Tensor]:
    """A step as fcam's trainer takes it: the loss under AMP, then a GradScaler-scaled update.
    The step returns the detached loss."""
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    def step() -> torch.Tensor:
        with autocast(device, amp):
            loss = loss_of_batch()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def calibrated(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """The model in eval mode with the BatchNorm statistics of ``images`` (one train-mode pass,
    cumulative averaging), so that a random-init network keeps activations of a sane scale."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


# ---------------------------------------------------------------- parity with the CPU


@dataclass(frozen=True)
class ParityMaps:
    """The six methods' CAMs of one batch computed on the CPU and on the device (copied back)."""

    cpu: dict[str, torch.Tensor]
    device: dict[str, torch.Tensor]


def parity_maps(s: Settings) -> ParityMaps:
    from fcam.cams import compute_cams
    from fcam.cams.registry import ONE_PASS_CAM_METHODS
    from fcam.models import build_classifier

    torch.manual_seed(0)
    images = torch.randn(s.parity_batch, 3, s.parity_size, s.parity_size)
    targets = torch.arange(s.parity_batch) % NUM_CLASSES
    model = calibrated(build_classifier("resnet50", NUM_CLASSES, "none"), images)
    twin = copy.deepcopy(model).to(s.device)
    cpu, device = {}, {}
    with ieee_float32():
        for method in ONE_PASS_CAM_METHODS:
            options = {"size": (s.parity_size, s.parity_size), "interpolation": "bilinear"}
            if method == "smoothgradcampp":
                options["noise_std"] = 0.0  # CPU and CUDA generators draw different noise
            cpu[method] = compute_cams(model, images, targets, method, model.cam_target_layer, fc=model.fc,
                                       **options)
            device[method] = compute_cams(twin, images.to(s.device), targets.to(s.device), method,
                                          twin.cam_target_layer, fc=twin.fc, **options).cpu()
    return ParityMaps(cpu, device)


def check_cams(report: Report, maps: ParityMaps, s: Settings) -> None:
    detail = f"ResNet50 (random init), {s.parity_size} px, batch {s.parity_batch}, bilinear upsampling, TF32 off"
    for method, reference in maps.cpu.items():
        diff = float((reference - maps.device[method]).abs().max())
        note = "; no noise (the devices' generators differ)" if method == "smoothgradcampp" else ""
        report.add(f"CAM parity: {method}", diff <= CAM_TOLERANCE, f"max abs diff {diff:.1e}", detail + note)


def check_seeds(report: Report, maps: ParityMaps, s: Settings) -> None:
    from fcam.losses import IGNORE_INDEX, SeedSampler

    cams = torch.cat(list(maps.cpu.values()))
    sampler = SeedSampler(n_seeds=10, bg_fraction=0.3, ksz=3, erode_size=11)
    fg_cpu, bg_cpu = sampler.regions(cams)
    fg_dev, bg_dev = (region.cpu() for region in sampler.regions(cams.to(s.device)))
    detail = f"{len(cams)} CPU CAMs of the six methods, moved to the device"
    fg_diff = int((fg_cpu != fg_dev).sum())
    report.add("seed parity: foreground (Otsu, 11x11 erosion)", fg_diff == 0, f"{fg_diff} pixels differ", detail)
    # The background is the lowest 30 % of pixels; tied CAM values may be taken in another order,
    # so each image's picked values, sorted, are compared.
    same_values = all(torch.equal(c[b1].sort().values, c[b2].sort().values) for c, b1, b2 in zip(cams, bg_cpu, bg_dev))
    bg_diff = int((bg_cpu != bg_dev).sum())
    report.add("seed parity: background (lowest CAM)", same_values,
               f"same CAM values picked; {bg_diff} pixels differ (ties)" if same_values else "different CAM values picked",
               detail)
    generator = torch.Generator(device=s.device).manual_seed(0)
    fg_seeds, bg_seeds = (seeds.cpu() for seeds in sampler.centers(cams.to(s.device), generator=generator))
    inside = not (fg_seeds & ~fg_dev).any() and not (bg_seeds & ~bg_dev).any()
    counts = all(torch.equal(seeds.flatten(1).sum(1), region.flatten(1).sum(1).clamp(max=sampler.n_seeds))
                 for seeds, region in ((fg_seeds, fg_dev), (bg_seeds, bg_dev)))
    labels = sampler(cams.to(s.device), generator=generator).cpu()
    valid = set(labels.unique().tolist()) <= {0, 1, IGNORE_INDEX}
    report.add("seeds sampled on the device", inside and counts and valid,
               f"{int(fg_seeds.sum())} fg, {int(bg_seeds.sum())} bg seeds inside their regions" if inside
               else "seeds outside their regions",
               "the device's generator (its own random stream); labels in {0, 1, ignore}")


def crf_inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random 0..255 images with a little noise, and random two-class logits."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, 4, 4, generator=generator) * 255
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    images = (images + 8 * torch.randn(images.shape, generator=generator)).clamp(0, 255)
    return images, torch.randn(batch, 2, size, size, generator=generator)


def crf_loss_and_grad(backend: str, images: torch.Tensor, logits: torch.Tensor,
                      device: torch.device) -> tuple[float, torch.Tensor]:
    from fcam.losses import DenseCRFLoss

    leaf = logits.to(device, copy=True).requires_grad_(True)
    loss = DenseCRFLoss(backend=backend)(images.to(device), torch.softmax(leaf, dim=1))  # the paper's settings
    loss.backward()
    return float(loss.detach()), leaf.grad.cpu().double()


def relative(a: float | torch.Tensor, b: float | torch.Tensor) -> float:
    """|a - b| / |b| for numbers, ||a - b|| / ||b|| for tensors."""
    if isinstance(a, torch.Tensor):
        return float((a - b).norm() / b.norm())
    return abs(a - b) / abs(b)


def check_crf(report: Report, s: Settings) -> None:
    for backend, size in (("permutohedral", s.parity_size), ("exact", s.crf_exact_size)):
        images, logits = crf_inputs(2, size)
        loss_cpu, grad_cpu = crf_loss_and_grad(backend, images, logits, torch.device("cpu"))
        first = crf_loss_and_grad(backend, images, logits, s.device)
        second = crf_loss_and_grad(backend, images, logits, s.device)
        errors = relative(first[0], loss_cpu), relative(first[1], grad_cpu)
        spread = relative(second[0], first[0]), relative(second[1], first[1])
        report.add(f"CRF parity: {backend}", max(*errors, *spread) <= CRF_TOLERANCE,
                   f"rel. error loss {errors[0]:.1e}, gradient {errors[1]:.1e}",
                   f"{size}x{size}, batch 2; two device runs differ by {spread[0]:.1e} (loss), "
                   f"{spread[1]:.1e} (gradient)")


def synthetic_ground_truth(n: int, size: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One random box per map (30-100 % of the side), the same boxes as masks, a 2 px ignore band."""
    rng = np.random.default_rng(0)
    boxes, masks, ignore = [], np.zeros((n, size, size), bool), np.zeros((n, size, size), bool)
    for i in range(n):
        w, h = rng.integers(3 * size // 10, size, size=2, endpoint=True)
        x0, y0 = rng.integers(0, size - w, endpoint=True), rng.integers(0, size - h, endpoint=True)
        boxes.append(np.array([[x0, y0, x0 + w - 1, y0 + h - 1]]))
        masks[i, y0:y0 + h, x0:x0 + w] = True
        ignore[i, max(y0 - 2, 0):y0 + h + 2, max(x0 - 2, 0):x0 + w + 2] = True
    return boxes, masks, ignore & ~masks


def check_evaluators(report: Report, maps: ParityMaps, s: Settings) -> None:
    from fcam.metrics import BoxEvaluator, MaskEvaluator

    cpu = torch.cat(list(maps.cpu.values())).double().numpy()
    dev = torch.cat(list(maps.device.values())).double().numpy()
    n = len(cpu)
    boxes, masks, ignore = synthetic_ground_truth(n, s.parity_size)
    # Boxes depend on a map's uint8 levels only, so only maps whose levels differ can change a hit,
    # and each changes an accuracy by at most 100 / n.
    differ = int(((cpu * 255).astype(np.uint8) != (dev * 255).astype(np.uint8)).reshape(n, -1).any(1).sum())
    allowed = 100.0 * differ / n
    box_metrics = []
    for scoremaps in (cpu, dev):
        evaluator = BoxEvaluator(cam_curve_interval=s.curve_interval)
        evaluator.add(scoremaps, boxes)
        box_metrics.append(evaluator.compute())
    detail = f"{n} maps (six methods, CPU vs device), random boxes; {differ} maps differ in some uint8 level"
    for key in ("MaxBoxAcc", "MaxBoxAccV2"):
        a, b = box_metrics[0][key], box_metrics[1][key]
        report.add(f"evaluator parity: {key}", abs(a - b) <= allowed, f"{a:.2f} vs {b:.2f}",
                   detail + f" (gap allowed {allowed:.2f})")
    pixel = []
    for scoremaps in (cpu, dev):
        evaluator = MaskEvaluator(cam_curve_interval=s.curve_interval)
        evaluator.add(scoremaps, masks, ignore)
        pixel.append((evaluator.compute()["PxAP"], evaluator.state()))
    same_bins = all(np.array_equal(pixel[0][1][k], pixel[1][1][k]) for k in pixel[0][1])
    gap = abs(pixel[0][0] - pixel[1][0])
    report.add("evaluator parity: PxAP", gap == 0 if same_bins else gap <= PXAP_TOLERANCE,
               f"{pixel[0][0]:.3f} vs {pixel[1][0]:.3f}",
               "same score histograms" if same_bins else f"histograms differ (tolerance {PXAP_TOLERANCE})")


# ---------------------------------------------------------------- training commands


def quietly(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """Run a command's ``main`` in this process; returns its status and its output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(argv)
    return status, out.getvalue()


def tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def command_args(s: Settings, data: Path) -> list[str]:
    """``--config configs/synth.yaml --set ...`` for a one-epoch run of either training command."""
    return ["--config", str(REPO / "configs" / "synth.yaml"), "--set",
            f"data.root={data / 'images'}", f"data.metadata_root={data / 'metadata'}",
            f"data.mask_root={data / 'masks'}", f"device={s.device.type}", "train.amp=true",
            "train.epochs=1", "train.warmup_epochs=0", "fcam.epochs=1", *s.train_overrides]


def logged_losses(run: Path) -> dict[str, float]:
    """The training losses of every epoch in ``run/log.jsonl`` (an empty log is an error)."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise RuntimeError(f"{run / 'log.jsonl'} is empty")
    return {f"{key} (epoch {row['epoch']})": float(value)
            for row in rows for key, value in row.items() if key.startswith("train_")}


def report_training(report: Report, check: str, status: int, output: str, run: Path, detail: str) -> None:
    if status != 0:
        report.add(check, False, f"exit status {status}: {tail(output)}", detail)
        return
    losses = logged_losses(run)
    finite = all(math.isfinite(v) for v in losses.values())
    figure = ", ".join(f"{k.removeprefix('train_').split(' ')[0]} {v:.4g}" for k, v in losses.items())
    report.add(check, finite, figure if finite else "non-finite loss: " + figure, detail)


def make_synthetic_data(s: Settings, work: Path) -> Path:
    from fcam.cli import synth

    data = work / "synth"
    status, output = quietly(synth.main, [str(data), *s.synth_args, "--quiet"])
    if status != 0:
        raise RuntimeError(f"fcam-synth failed: {tail(output)}")
    return data


def check_amp_training(report: Report, s: Settings, data: Once, work: Path) -> None:
    from fcam.cli import train_cls, train_decoder

    detail = f"configs/synth.yaml, 1 epoch, device={s.device.type}, train.amp=true" + (
        " (AMP is CUDA-only: off on the CPU)" if s.device.type == "cpu" else "")
    args = command_args(s, data.get())
    cls_run, fcam_run = work / "amp_cls", work / "amp_fcam"
    report.run("AMP training: fcam-train-cls", lambda: report_training(
        report, "AMP training: fcam-train-cls", *quietly(train_cls.main, [*args, "--output", str(cls_run)]),
        cls_run, detail))
    report.run("AMP training: fcam-train-decoder", lambda: report_training(
        report, "AMP training: fcam-train-decoder",
        *quietly(train_decoder.main, [*args, "--classifier", str(cls_run / "best.pt"), "--output", str(fcam_run)]),
        fcam_run, detail))


def torchrun(module: str, args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", module, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)


def check_torchrun(report: Report, s: Settings, data: Once, work: Path) -> None:
    run, evaluation = work / "ddp_cls", work / "ddp_eval"
    check = "torchrun (1 process): fcam.cli.train_cls"
    done = torchrun("fcam.cli.train_cls", [*command_args(s, data.get()), "--output", str(run)])
    report_training(report, check, done.returncode, done.stdout + done.stderr, run,
                    f"1 epoch, device={s.device.type}, train.amp=true")
    check = "torchrun (1 process): fcam.cli.eval"
    done = torchrun("fcam.cli.eval", ["--checkpoint", str(run / "last.pt"), "--method", "cam", "gradcampp",
                                      "--split", "test", "--output", str(evaluation)])
    if done.returncode != 0:
        report.add(check, False, f"exit status {done.returncode}: {tail(done.stderr)}")
        return
    metrics = {m: json.loads((evaluation / m / "metrics.json").read_text()) for m in ("cam", "gradcampp")}
    keys = ("MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "top5_loc", "cls_acc")
    complete = all(math.isfinite(float(m[k])) for m in metrics.values() for k in keys)
    report.add(check, complete, ", ".join(f"{m} MaxBoxAcc {v['MaxBoxAcc']:.2f}" for m, v in metrics.items()),
               "test split, methods cam and gradcampp; metrics.json complete and finite")


def check_process_group(report: Report, s: Settings, work: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from fcam.models import build_classifier

    backend = "nccl" if s.device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=(work / "process_group").as_uri(), rank=0, world_size=1,
                            device_id=s.device if s.device.type == "cuda" else None)
    try:
        value = torch.full((4,), 3.0, device=s.device)
        dist.all_reduce(value)
        reduced = bool((value == 3.0).all())
        torch.manual_seed(0)
        model = build_classifier("resnet18", NUM_CLASSES, "none").to(s.device)
        net = DistributedDataParallel(model, device_ids=[s.device.index] if s.device.type == "cuda" else None)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(4, 3, s.parity_size, s.parity_size, device=s.device)
        labels = torch.arange(4, device=s.device) % NUM_CLASSES
        loss = training_step(lambda: F.cross_entropy(net(images), labels), optimizer, s.device, amp=True)()
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters()) and math.isfinite(float(loss))
        report.add(f"{backend} process group (1 rank): all-reduce, DDP AMP step", reduced and finite,
                   f"all-reduce {'exact' if reduced else 'wrong'}, loss {float(loss):.4f}",
                   "ResNet18 classifier wrapped in DistributedDataParallel")
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- throughput


def images_per_second(step: Callable[[], torch.Tensor], batch: int, s: Settings) -> tuple[float, torch.Tensor]:
    """``s.warmup`` steps, then ``s.iterations`` timed steps between device synchronizations."""
    for _ in range(s.warmup):
        step()
    synchronize(s.device)
    start = time.perf_counter()
    for _ in range(s.iterations):
        out = step()
    synchronize(s.device)
    return batch * s.iterations / (time.perf_counter() - start), out


def peak_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return "peak memory n/a (CPU)"
    return f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


class Bench:
    """One backbone's classifier and F-CAM model on the device, a synthetic batch, and the steps timed."""

    def __init__(self, backbone: str, s: Settings) -> None:
        from fcam.models import build_classifier, build_fcam

        self.s = s
        generator = torch.Generator().manual_seed(0)
        shape = (s.bench_batch, 3, s.bench_size, s.bench_size)
        self.images = torch.randn(shape, generator=generator).to(s.device)
        self.raw = (torch.rand(shape, generator=generator) * 255).to(s.device)
        self.labels = (torch.arange(s.bench_batch) % NUM_CLASSES).to(s.device)
        self.classifier = build_classifier(backbone, NUM_CLASSES, "none").to(s.device)
        self.fcam = build_fcam(copy.deepcopy(self.classifier)).to(s.device)

    def classifier_step(self, amp: bool) -> Callable[[], torch.Tensor]:
        """An SGD step of the classifier on cross-entropy, as fcam-train-cls takes it."""
        model = self.classifier.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        return training_step(lambda: F.cross_entropy(model(self.images), self.labels), optimizer, self.s.device, amp)

    def decoder_step(self, amp: bool) -> Callable[[], torch.Tensor]:
        """An F-CAM decoder step: CAM seeds, partial cross-entropy and the dense CRF loss (the size
        term, a sum over pixels, is left out)."""
        from fcam.cams import compute_cams
        from fcam.losses import IGNORE_INDEX, DenseCRFLoss, SeedSampler

        model = self.fcam.train()
        classifier = model.classifier
        optimizer = torch.optim.SGD(model.decoder.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                    weight_decay=1e-4)
        sampler, crf = SeedSampler(n_seeds=1, bg_fraction=0.3), DenseCRFLoss()
        generator = torch.Generator(device=self.s.device).manual_seed(0)
        size = tuple(self.images.shape[-2:])

        def loss() -> torch.Tensor:
            cams = compute_cams(classifier, self.images, self.labels, "cam", classifier.cam_target_layer,
                                fc=classifier.fc, size=size)
            seeds = sampler(cams, generator=generator)
            logits = model(self.images)["seg_logits"].float()
            pce = F.cross_entropy(logits, seeds, ignore_index=IGNORE_INDEX)
            return pce + crf(self.raw, torch.softmax(logits, dim=1))

        return training_step(loss, optimizer, self.s.device, amp)

    def cam_eval_step(self, amp: bool) -> Callable[[], torch.Tensor]:
        """What evaluation computes per batch before scoring: logits, and CAMs resized as the
        protocol does (OpenCV bicubic to the image size) and min-max normalized."""
        from fcam.cams import compute_cams

        model, device = self.classifier.eval(), self.s.device
        size = tuple(self.images.shape[-2:])

        def step() -> torch.Tensor:
            with torch.no_grad(), autocast(device, amp):
                logits = model(self.images)
            with autocast(device, amp):
                maps = compute_cams(model, self.images, self.labels, "cam", model.cam_target_layer, fc=model.fc,
                                    size=size, interpolation="bicubic")
            return maps.sum() + logits.float().sum()

        return step


def check_throughput(report: Report, s: Settings) -> None:
    cases = (("classifier train step", Bench.classifier_step), ("decoder train step", Bench.decoder_step),
             ("CAM eval", Bench.cam_eval_step))
    for backbone in BACKBONES:
        bench = Once(lambda backbone=backbone: Bench(backbone, s))
        for amp in (False, True):
            for name, make_step in cases:
                check = f"throughput: {backbone} {name}, AMP {'on' if amp else 'off'}"
                report.run(check, lambda check=check, make_step=make_step, amp=amp: timed(
                    report, check, lambda: make_step(bench.get(), amp), s))
        del bench
        gc.collect()
        if s.device.type == "cuda":
            torch.cuda.empty_cache()


def timed(report: Report, check: str, make_step: Callable[[], Callable[[], torch.Tensor]], s: Settings) -> None:
    step = make_step()
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    rate, out = images_per_second(step, s.bench_batch, s)
    finite = bool(torch.isfinite(out).all())
    report.add(check, finite, f"{rate:.1f} img/s, {peak_memory(s.device)}",
               f"{s.bench_size} px, batch {s.bench_batch}, {s.iterations} timed steps after {s.warmup} warm-up"
               + ("" if finite else "; non-finite output"))


def check_crf_speed(report: Report, s: Settings) -> None:
    from fcam.losses import DenseCRFLoss

    crf = DenseCRFLoss()
    images, logits = (t.to(s.device) for t in crf_inputs(s.bench_batch, s.bench_size))

    def step() -> torch.Tensor:
        leaf = logits.clone().requires_grad_(True)
        loss = crf(images, torch.softmax(leaf, dim=1))
        loss.backward()
        return loss.detach()

    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    rate, out = images_per_second(step, s.bench_batch, s)
    report.add("CRF loss speed (permutohedral)", bool(torch.isfinite(out)), f"{1000 / rate:.2f} ms/img, "
               f"{peak_memory(s.device)}", f"{s.bench_size} px, batch {s.bench_batch}, forward + backward, "
               "smooth random images with noise")


# ---------------------------------------------------------------- main


def run_checks(s: Settings, work: Path) -> Report:
    report = Report()
    maps = Once(lambda: parity_maps(s))
    data = Once(lambda: make_synthetic_data(s, work))
    report.run("CAM parity", lambda: check_cams(report, maps.get(), s))
    report.run("seed parity", lambda: check_seeds(report, maps.get(), s))
    report.run("CRF parity", lambda: check_crf(report, s))
    report.run("evaluator parity", lambda: check_evaluators(report, maps.get(), s))
    report.run("AMP training", lambda: check_amp_training(report, s, data, work))
    report.run("torchrun (1 process)", lambda: check_torchrun(report, s, data, work))
    report.run("process group (1 rank)", lambda: check_process_group(report, s, work))
    check_throughput(report, s)
    report.run("CRF loss speed (permutohedral)", lambda: check_crf_speed(report, s))
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", nargs="?", default="gpu_check.md", help="Markdown file to write (gpu_check.md)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run the same code paths on the CPU at tiny sizes (gloo instead of NCCL)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_DEVICE)
        return 0
    s = settings(args.cpu_smoke)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fcam_gpu_check_") as work:
        report = run_checks(s, Path(work))
    command = "python scripts/gpu_check.py" + (" --cpu-smoke" if args.cpu_smoke else "")
    text = report.markdown(machine_line(s.device), command, time.perf_counter() - started)
    print("\n" + text, end="")
    Path(args.report).write_text(text)
    print(f"wrote {args.report}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
