"""A small WSOL set of real photographs with pasted photographed objects, to check a recipe beyond
``fcam-synth``'s drawn objects.

Five classes, each an object cut out of one of scikit-image's sample photographs (a cat's face,
a coffee cup, a portrait, a rocket, a logo), pasted at random scale, aspect, position, flip and
brightness, once or twice per image, onto random crops of the other sample photographs (grass,
gravel, brick, the moon, ...), with part-less photographed blobs as distractors on some images.
The class shows on the whole object here, unlike ``fcam-synth`` where only a small marker tells it.
Written in wsolevaluation's layout like ``fcam-synth`` (boxes under CUB, masks under OpenImages),
so ``configs/synth.yaml`` runs on it with the data paths set:

    python scripts/photo_proxy.py data/photos
    fcam-train-cls --config configs/synth.yaml --set data.root=data/photos/images \\
        data.metadata_root=data/photos/metadata data.mask_root=data/photos/masks --output runs/photos/cls
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from fcam.data.metadata import SplitRecords

# (class name, sample photograph, crop rows, crop columns); the logo's own alpha is its mask.
OBJECTS = (("cat", "chelsea", (20, 280), (90, 360)), ("cup", "coffee", (60, 380), (120, 470)),
           ("portrait", "astronaut", (0, 330), (120, 420)), ("rocket", "rocket", (30, 420), (260, 460)),
           ("logo", "logo", (0, 500), (0, 500)))
BACKGROUNDS = ("grass", "gravel", "brick", "moon", "camera", "clock", "coins", "hubble_deep_field", "retina",
               "immunohistochemistry", "page")
DISTRACTORS = ("cell", "colorwheel")


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)


class Painter:
    """Draws the images of one dataset from a seeded generator."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.objects = [getattr(skimage.data, photo)() for _, photo, _, _ in OBJECTS]
        self.backgrounds = [_rgb(getattr(skimage.data, name)()) for name in BACKGROUNDS]
        self.distractors = [_rgb(getattr(skimage.data, name)()) for name in DISTRACTORS]

    def blob(self, height: int, width: int) -> np.ndarray:
        """A filled ellipse with a wavy edge, (height, width) uint8 0/1."""
        yy, xx = np.mgrid[:height, :width]
        cy, cx = (height - 1) / 2, (width - 1) / 2
        angle = np.arctan2(yy - cy, xx - cx)
        radius = np.hypot((yy - cy) / (height / 2), (xx - cx) / (width / 2))
        amplitude, phase = self.rng.uniform(0.05, 0.15, 3), self.rng.uniform(0, 2 * np.pi, 3)
        edge = 0.85 + sum(amplitude[i] * np.sin((i + 2) * angle + phase[i]) for i in range(3))
        return (radius < edge).astype(np.uint8)

    def background(self) -> np.ndarray:
        photo = self.backgrounds[self.rng.integers(len(self.backgrounds))]
        height, width = photo.shape[:2]
        side = int(self.rng.uniform(0.3, 0.9) * min(height, width))
        y, x = self.rng.integers(0, height - side + 1), self.rng.integers(0, width - side + 1)
        image = cv2.resize(photo[y:y + side, x:x + side, :3], (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.clip(image.astype(np.float32) * self.rng.uniform(0.7, 1.2, 3), 0, 255)

    def object(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """A pasted instance of class ``label``: (h, w, 3) float pixels and its (h, w) 0/1 mask."""
        _, _, (y0, y1), (x0, x1) = OBJECTS[label]
        jitter_y, jitter_x = (self.rng.uniform(-0.08, 0.08, 2) * [y1 - y0, x1 - x0]).astype(int)
        crop = self.objects[label][max(y0 + jitter_y, 0):y1 + jitter_y, max(x0 + jitter_x, 0):x1 + jitter_x]
        side, aspect = self.rng.uniform(0.3, 0.65) * self.size, self.rng.uniform(0.8, 1.25)
        height, width = max(int(side * aspect), 8), max(int(side / aspect), 8)
        patch = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        if patch.shape[-1] == 4:
            mask, patch = (patch[..., 3] > 127).astype(np.uint8), patch[..., :3]
        else:
            mask = self.blob(height, width)
        if self.rng.random() < 0.5:
            patch, mask = patch[:, ::-1], mask[:, ::-1]
        return np.clip(patch.astype(np.float32) * self.rng.uniform(0.8, 1.2), 0, 255), mask

    def distractor(self) -> tuple[np.ndarray, np.ndarray]:
        photo = self.distractors[self.rng.integers(len(self.distractors))]
        side = int(self.rng.uniform(0.2, 0.4) * self.size)
        y, x = self.rng.integers(0, photo.shape[0] - 100), self.rng.integers(0, photo.shape[1] - 100)
        patch = cv2.resize(photo[y:y + 100, x:x + 100, :3], (side, side)).astype(np.float32)
        return patch, self.blob(side, side)

    def paste(self, image: np.ndarray, patch: np.ndarray, mask: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """Paste where it overlaps nothing pasted before (20 tries); returns its full-size mask."""
        height, width = mask.shape
        for _ in range(20):
            y, x = self.rng.integers(0, self.size - height + 1), self.rng.integers(0, self.size - width + 1)
            if not (taken[y:y + height, x:x + width] & (mask > 0)).any():
                break
        full = np.zeros((self.size, self.size), np.uint8)
        full[y:y + height, x:x + width] = mask
        image[full > 0] = patch[mask > 0]
        taken |= full > 0
        return full

    def example(self, label: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """An image (uint8 BGR) of class ``label`` and the masks of its instances."""
        image = self.background()
        taken = np.zeros((self.size, self.size), bool)
        if self.rng.random() < 0.3:
            self.paste(image, *self.distractor(), taken)
        masks = [self.paste(image, *self.object(label), taken) for _ in range(1 + int(self.rng.random() < 0.3))]
        return image.astype(np.uint8)[..., ::-1], masks


def write(out: Path, size: int, seed: int, counts: dict[str, int]) -> None:
    painter = Painter(size, seed)
    for split, per_class in counts.items():
        records = {dataset: SplitRecords() for dataset in ("CUB", "OpenImages")}
        for label, (name, *_) in enumerate(OBJECTS):
            for i in range(per_class):
                image, masks = painter.example(label)
                ids = {"CUB": f"{label + 1:03d}.{name}/{split}_{i:04d}.png", "OpenImages": f"{split}/{name}/{split}_{i:04d}.png"}
                for dataset, image_id in ids.items():
                    path = out / "images" / dataset / image_id
                    path.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(path), image)
                    records[dataset].add(image_id, label)
                records["CUB"].sizes.append(f"{ids['CUB']},{size},{size}")
                for k, mask in enumerate(masks):
                    ys, xs = np.nonzero(mask)
                    records["CUB"].localization.append(f"{ids['CUB']},{xs.min()},{ys.min()},{xs.max()},{ys.max()}")
                    mask_path = f"{split}/{name}/{split}_{i:04d}_m{k:02d}.png"
                    (out / "masks/OpenImages" / mask_path).parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out / "masks/OpenImages" / mask_path), mask * 255)
                    records["OpenImages"].localization.append(f"{ids['OpenImages']},{mask_path},")
        for dataset, split_records in records.items():
            split_records.write(out / "metadata" / dataset / split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, nargs=3, default=(60, 10, 20), metavar=("TRAIN", "VAL", "TEST"),
                        help="images per class in train, val and test (default 60 10 20)")
    args = parser.parse_args()
    write(args.output, args.image_size, args.seed, dict(zip(("train", "val", "test"), args.per_class)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
