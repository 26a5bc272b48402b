"""Time the dense CRF loss (forward + backward) against a ResNet50 training step, in one run.

The permutohedral CRF at batch 8, 224x224, K=2 must cost at most half of a torchvision ResNet50
forward + backward at the same batch and size (random init, train mode). Repeats are interleaved
and medians compared; the exact backend is timed at a smaller size, next to the lattice there.
Images are photographs from skimage.data (realistic lattice sizes) and, as a worst case, noise.

    python scripts/bench_crf.py [--batch 8] [--size 224] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import skimage.data
import skimage.transform
import torch
import torchvision

from fcam.losses import DenseCRFLoss

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")  # all bundled


def photos(batch: int, size: int) -> torch.Tensor:
    """(batch, 3, size, size) float 0..255 photographs, cycling through skimage.data."""
    images = []
    for i in range(batch):
        photo = getattr(skimage.data, _PHOTOS[i % len(_PHOTOS)])()[..., :3]
        resized = skimage.transform.resize(photo, (size, size), preserve_range=True, anti_aliasing=True)
        images.append(torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float())
    return torch.stack(images)


def crf_step(loss: DenseCRFLoss, images: torch.Tensor) -> Callable[[], None]:
    """A closure running the CRF loss forward + backward on fresh logits."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(images.shape[0], 2, *images.shape[2:], generator=generator)

    def step() -> None:
        leaf = logits.clone().requires_grad_(True)
        loss(images, torch.softmax(leaf, dim=1)).backward()

    return step


def resnet_step(batch: int, size: int) -> Callable[[], None]:
    """A closure running a ResNet50 forward + backward (train mode, random init)."""
    model = torchvision.models.resnet50(weights=None).train()
    inputs = torch.randn(batch, 3, size, size)
    targets = torch.randint(0, 1000, (batch,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()

    return step


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved_medians(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each step, the steps run in turn for each repeat after one warm-up."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exact-size", type=int, default=64, help="image size for the exact backend")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}x{args.size}, K=2")

    images = photos(args.batch, args.size)
    noise = torch.rand(args.batch, 3, args.size, args.size) * 255
    lattice = DenseCRFLoss(backend="permutohedral")
    medians = interleaved_medians(
        {
            "resnet50": resnet_step(args.batch, args.size),
            "crf_photos": crf_step(lattice, images),
            "crf_noise": crf_step(lattice, noise),
        },
        args.repeats,
    )
    for name, seconds in medians.items():
        print(f"{name:12s} forward+backward median {seconds * 1000:8.1f} ms")
    print(f"ratio crf_photos / resnet50 = {medians['crf_photos'] / medians['resnet50']:.3f} (requirement <= 0.5)")
    print(f"ratio crf_noise  / resnet50 = {medians['crf_noise'] / medians['resnet50']:.3f}")

    small = photos(args.batch, args.exact_size)
    small_medians = interleaved_medians(
        {
            "exact": crf_step(DenseCRFLoss(backend="exact"), small),
            "permutohedral": crf_step(lattice, small),
        },
        args.repeats,
    )
    for name, seconds in small_medians.items():
        print(
            f"{name:13s} at batch {args.batch}, {args.exact_size}x{args.exact_size}: "
            f"forward+backward median {seconds * 1000:8.1f} ms"
        )


if __name__ == "__main__":
    main()
