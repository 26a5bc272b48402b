"""Scoring score maps saved by any tool as ``<scoremap_root>/<image_id>.npy`` (wsolevaluation's
convention), streamed through a DataLoader so memory stays flat whatever the number of maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from fcam.data import Metadata
from fcam.engine.evaluation import make_evaluator
from fcam.engine.loaders import FcamDataLoader, mask_targets
from fcam.errors import FcamError
from fcam.metrics import normalize_scoremap, resize_scoremap


def prepare_saved_map(scoremap: np.ndarray, eval_size: int, normalize: bool, name: str) -> np.ndarray:
    """One saved map as the protocol scores it.

    A 2-D map at the evaluation size with values in [0,1] is used as it is, like the reference's
    evaluator (re-normalizing it would change the numbers). ``normalize`` min-max normalizes
    maps outside [0,1] first. Another size is resized bicubically and clipped to [0,1].
    """
    if scoremap.ndim != 2:
        raise FcamError(f"{name}: expected a 2-D score map, got shape {tuple(scoremap.shape)}")
    if not np.issubdtype(scoremap.dtype, np.number) or not np.isfinite(scoremap).all():
        raise FcamError(f"{name}: a score map must hold finite numbers (found NaN, inf or dtype {scoremap.dtype})")
    scoremap = scoremap.astype(np.float64)
    if normalize:
        scoremap = normalize_scoremap(scoremap)
    elif scoremap.min() < 0 or scoremap.max() > 1:
        raise FcamError(f"{name}: values lie in [{scoremap.min():.6g}, {scoremap.max():.6g}], outside [0, 1]; "
                        f"pass --normalize to min-max normalize such maps")
    if scoremap.shape != (eval_size, eval_size):
        scoremap = np.clip(resize_scoremap(scoremap, eval_size, "bicubic"), 0.0, 1.0)
    return scoremap


class SavedMaps(Dataset):
    """Items: the prepared map, the image's index and, on mask data, its GT and ignore masks."""

    def __init__(self, scoremap_root: str | Path, metadata: Metadata, mask_root: str | Path | None,
                 eval_size: int, normalize: bool) -> None:
        self.root = Path(scoremap_root)
        if not self.root.is_dir():
            raise FcamError(f"--scoremap-root: no such directory: {self.root}")
        if metadata.kind == "mask" and mask_root is None:
            raise FcamError(f"{metadata.dataset} has mask annotations: pass --mask-root")
        self.metadata, self.mask_root = metadata, mask_root
        self.eval_size, self.normalize = eval_size, normalize

    def __len__(self) -> int:
        return len(self.metadata.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.metadata.image_ids[index]
        path = self.root / f"{image_id}.npy"
        if not path.is_file():
            raise FcamError(f"no score map for image '{image_id}': {path} is missing")
        try:
            scoremap = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FcamError(f"{path}: not a readable .npy score map ({exc})") from None
        scoremap = prepare_saved_map(scoremap, self.eval_size, self.normalize, str(path))
        return {"map": torch.from_numpy(scoremap), "index": index,
                **mask_targets(self.metadata, image_id, self.mask_root, self.eval_size)}


def evaluate_saved_maps(scoremap_root: str | Path, metadata: Metadata, mask_root: str | Path | None = None,
                        eval_size: int = 224, cam_curve_interval: float = 0.001, normalize: bool = False,
                        batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> dict:
    """MaxBoxAcc/MaxBoxAccV2 (box data) or PxAP (mask data) of the saved maps, in percent."""
    dataset = SavedMaps(scoremap_root, metadata, mask_root, eval_size, normalize)
    loader = FcamDataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    evaluator = make_evaluator(metadata, cam_curve_interval)
    gt_boxes = metadata.gt_boxes(eval_size) if metadata.kind == "box" else None
    for batch in tqdm(loader, desc="evaluate", disable=None if progress else True, dynamic_ncols=True):
        maps = batch["map"].numpy()
        if gt_boxes is not None:
            evaluator.add(maps, [gt_boxes[i] for i in batch["index"].tolist()])
        else:
            evaluator.add(maps, batch["gt_mask"].numpy(), batch["ignore_mask"].numpy())
    return evaluator.compute()
