"""Inference time of the CAM methods (default: the six one-pass ones), per image, one image at a time vs batched.

Prints a table like Table A.2 of the F-CAM paper (milliseconds per image) for each
backbone and method at each batch size, and the speed-up of the largest batch over
batch 1. Two reference rows per backbone: ``forward`` (the plain forward pass) and
``gradcam-fullbw`` (Grad-CAM computed as torchcam and the F-CAM code do it: a
``.backward()`` through the whole network, into every parameter's ``.grad``), against
which the ``gradcam`` row shows the gain of stopping the backward at the target layer.
Models are randomly initialized (timings do not depend on the weights), in eval mode.

    python scripts/bench_cams.py                                   # all backbones, 224 px
    python scripts/bench_cams.py --backbones resnet18 --image-size 112 --batch-sizes 1 8
    python scripts/bench_cams.py --torchvision --backbones resnet50  # any classifier works
"""

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from fcam.cams import CAM_METHODS, compute_cams, minmax_normalize
from fcam.cams.registry import ONE_PASS_CAM_METHODS
from fcam.models import BACKBONES, build_classifier

TORCHVISION_BACKBONES = ("resnet18", "resnet50")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), help="backbones to time")
    parser.add_argument("--methods", nargs="+", default=list(ONE_PASS_CAM_METHODS), choices=CAM_METHODS)
    parser.add_argument("--image-size", type=int, default=224, help="square input side in pixels")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per setting (median kept)")
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--torchvision",
        action="store_true",
        help=f"time plain torchvision models ({', '.join(TORCHVISION_BACKBONES)}; "
        "target layer4, fc) instead of fcam.models",
    )
    args = parser.parse_args()
    known = TORCHVISION_BACKBONES if args.torchvision else BACKBONES
    unknown = sorted(set(args.backbones) - set(known))
    if unknown:
        parser.error(f"unknown backbones {unknown}; choose from {list(known)}")
    return args


def build_model(
    backbone: str, num_classes: int, use_torchvision: bool
) -> tuple[nn.Module, nn.Module, nn.Linear]:
    """A randomly initialized classifier, its CAM target layer and its final linear layer."""
    if use_torchvision:
        model = getattr(torchvision.models, backbone)(num_classes=num_classes)
        return model, model.layer4, model.fc
    classifier = build_classifier(backbone, num_classes=num_classes)
    return classifier, classifier.cam_target_layer, classifier.fc


def plain_forward(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        return model(images)


def full_backward_gradcam(model: nn.Module, target_layer: nn.Module, images: Tensor) -> Tensor:
    """Grad-CAM of the predicted classes the way torchcam computes it: a full ``.backward()``."""
    kept: list[Tensor] = []

    def keep_output(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        output.retain_grad()
        kept.append(output)

    handle = target_layer.register_forward_hook(keep_output)
    try:
        with torch.enable_grad():
            logits = model(images)
            model.zero_grad()
            logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum().backward()
    finally:
        handle.remove()
    acts, grads = kept[0].detach(), kept[0].grad
    return minmax_normalize(F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1)))


def seconds(run: Callable[[Tensor], object], images: Tensor, device: torch.device) -> float:
    """Wall time of ``run(images)``, waiting for the GPU's queued work on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def per_image_ms(
    runs: dict[str, Callable[[Tensor], object]],
    batches: dict[int, Tensor],
    repeats: int,
    device: torch.device,
) -> dict[str, list[float]]:
    """Median milliseconds per image of each run at each batch size, after one warm-up call each.

    Runs and batch sizes alternate within each repeat, so that a change of load on the
    machine affects them all alike and their ratios stay fair.
    """
    for run in runs.values():
        for images in batches.values():
            run(images)
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            for b, images in batches.items():
                times[name][b].append(seconds(run, images, device))
    return {name: [1000 * statistics.median(times[name][b]) / b for b in batches] for name in runs}


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = sorted(set(args.batch_sizes))
    header = ["backbone", "method", *[f"ms/img @{b}" for b in batch_sizes], f"speed-up @{batch_sizes[-1]}"]
    print(
        f"device: {device}, image size: {args.image_size}, classes: {args.num_classes}, "
        f"repeats: {args.repeats}, threads: {torch.get_num_threads()}"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    generator = torch.Generator().manual_seed(0)
    for backbone in args.backbones:
        model, target_layer, fc = build_model(backbone, args.num_classes, args.torchvision)
        model = model.eval().to(device)
        batches = {
            b: torch.randn(b, 3, args.image_size, args.image_size, generator=generator).to(device)
            for b in batch_sizes
        }
        runs = {
            "forward": functools.partial(plain_forward, model),
            "gradcam-fullbw": functools.partial(full_backward_gradcam, model, target_layer),
        }
        for method in args.methods:
            runs[method] = functools.partial(
                compute_cams, model, targets=None, method=method, target_layer=target_layer, fc=fc
            )
        for name, ms in per_image_ms(runs, batches, args.repeats, device).items():
            cells = [backbone, name, *[f"{t:.1f}" for t in ms], f"x{ms[0] / ms[-1]:.1f}"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
