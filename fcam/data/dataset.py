"""The torch Dataset over one metadata split."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from fcam.data.metadata import Metadata
from fcam.data.transforms import PairedTransform
from fcam.errors import FcamError


class WSOLDataset(Dataset):
    """Images and labels of one split, with the protocol's train or eval transform.

    Image ``i`` is read from ``<image_root>/<image_id>``: ``image_root`` is the folder of one
    dataset (wsolevaluation keeps CUB images at ``<data_root>/CUB/<image_id>``, so callers pass
    ``<data_root>/<dataset>``). An item is a dict with ``image`` (3, H, W) ImageNet-normalized,
    ``raw`` (3, H, W) float 0..255 under the same crop and flip, ``label``, ``index`` and
    ``image_id``. With ``num_classes`` given, every label must be below it.
    """

    def __init__(
        self,
        image_root: str | Path,
        metadata: Metadata,
        train: bool,
        resize_size: int = 256,
        crop_size: int = 224,
        num_classes: int | None = None,
    ) -> None:
        self.image_root = Path(image_root)
        self.metadata = metadata
        self.transform = PairedTransform(train, resize_size, crop_size)
        if num_classes is not None:
            folder = metadata.folder or Path(metadata.dataset, metadata.split)
            for image_id, label in zip(metadata.image_ids, metadata.labels):
                if label >= num_classes:
                    raise FcamError(
                        f"{folder / 'class_labels.txt'}: image {image_id!r} has label {label}, "
                        f"but there are {num_classes} classes"
                    )

    def __len__(self) -> int:
        return len(self.metadata.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.metadata.image_ids[index]
        path = self.image_root / image_id
        try:
            with Image.open(path) as file:
                image = file.convert("RGB")
        except OSError as error:
            raise FcamError(f"cannot read image {path}: {error}") from error
        normalized, raw = self.transform(image)
        return {
            "image": normalized,
            "raw": raw,
            "label": self.metadata.labels[index],
            "index": index,
            "image_id": image_id,
        }
