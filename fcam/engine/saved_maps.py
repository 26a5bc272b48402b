"""Scoring score maps saved by any tool as ``<scoremap_root>/<image_id>.npy`` (wsolevaluation's
convention).

Parallel scoring lives with the data: each worker of a :class:`ScoringPool` reads a chunk of
maps (and, for PxAP, the images' mask PNGs), computes the per-image hits or histograms and
sends only those back, so the main process just adds them and memory stays flat whatever the
number of maps. Neither the workers nor this module need torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fcam.data import MaskCache, Metadata, load_gt_mask
from fcam.engine.scoring import AUTO, ScoringPool, resolve_num_workers
from fcam.errors import FcamError
from fcam.metrics import BoxEvaluator, MaskEvaluator, box_hits_from_levels, gray_levels, pixel_histograms
from fcam.metrics.scoremap import normalize_scoremap, resize_scoremap
from fcam.protocol import CAM_CURVE_INTERVAL, EVAL_SIZE

# Maps that make a worker process worth starting: a worker costs about 0.3 s of CPU to start, a box
# worker 0.6 s more to import numba and load the compiled sweeps; a box map then costs ~5 ms, a
# mask map ~1.7 ms, mostly reading its PNGs.
MIN_MAPS_PER_WORKER = {"box": 128, "mask": 512}


def prepare_saved_map(scoremap: np.ndarray, eval_size: int, normalize: bool, name: str) -> np.ndarray:
    """One saved map as the protocol scores it.

    A 2-D map at the evaluation size with values in [0,1] is used as it is, like the reference's
    evaluator (re-normalizing it would change the numbers). ``normalize`` min-max normalizes
    maps outside [0,1] first. Another size is resized bicubically and clipped to [0,1].
    """
    if scoremap.ndim != 2:
        raise FcamError(f"{name}: expected a 2-D score map, got shape {tuple(scoremap.shape)}")
    # NaN propagates to the minimum and the maximum, and an infinity is one of them.
    if not np.issubdtype(scoremap.dtype, np.number) or (
            scoremap.size and not (np.isfinite(scoremap.min()) and np.isfinite(scoremap.max()))):
        raise FcamError(f"{name}: a score map must hold finite numbers (found NaN, inf or dtype {scoremap.dtype})")
    scoremap = scoremap.astype(np.float64, copy=False)
    if normalize:
        scoremap = normalize_scoremap(scoremap)
    elif scoremap.min() < 0 or scoremap.max() > 1:
        raise FcamError(f"{name}: values lie in [{scoremap.min():.6g}, {scoremap.max():.6g}], outside [0, 1]; "
                        f"pass --normalize to min-max normalize such maps")
    if scoremap.shape != (eval_size, eval_size):
        scoremap = np.clip(resize_scoremap(scoremap, eval_size, "bicubic"), 0.0, 1.0)
    return scoremap


@dataclass(frozen=True)
class SavedMaps:
    """Where the maps are and how to prepare them; small, so it travels to the workers with each chunk."""

    root: Path
    eval_size: int
    normalize: bool

    def load(self, image_id: str) -> np.ndarray:
        """The prepared (eval_size, eval_size) float64 map of ``image_id``."""
        path = self.root / f"{image_id}.npy"
        if not path.is_file():
            raise FcamError(f"no score map for image '{image_id}': {path} is missing")
        try:
            scoremap = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FcamError(f"{path}: not a readable .npy score map ({exc})") from None
        return prepare_saved_map(scoremap, self.eval_size, self.normalize, str(path))


def score_saved_boxes(maps: SavedMaps, image_ids: list[str], gt_boxes: list[np.ndarray], thresholds: np.ndarray,
                      iou_thresholds: tuple[int, ...]) -> np.ndarray:
    """Per-image box hits (:func:`fcam.metrics.box_hits`) of a chunk of saved maps; runs in a worker."""
    levels = np.stack([gray_levels(maps.load(image_id)) for image_id in image_ids])
    return box_hits_from_levels(levels, gt_boxes, thresholds, iou_thresholds)


def score_saved_masks(maps: SavedMaps, image_ids: list[str], masks: list[tuple[list[str], str | None]],
                      mask_root: str | Path, dataset: str, edges: np.ndarray,
                      mask_cache: str | Path | None = None) -> np.ndarray:
    """Per-image PxAP histograms (:func:`fcam.metrics.pixel_histograms`) of a chunk of saved maps,
    the masks read from ``<mask_root>/<dataset>/`` (or from ``mask_cache``, a
    :class:`fcam.data.MaskCache` directory); runs in a worker."""
    cache = MaskCache(mask_cache, maps.eval_size) if mask_cache else None
    histograms = []
    for image_id, (paths, ignore_path) in zip(image_ids, masks):
        scoremap = maps.load(image_id)
        foreground, ignore = load_gt_mask(mask_root, paths, ignore_path, maps.eval_size, dataset=dataset,
                                          cache=cache)
        histograms.append(pixel_histograms(scoremap[None], foreground[None], ignore[None], edges)[0])
    return np.stack(histograms)


def evaluate_saved_maps(scoremap_root: str | Path, metadata: Metadata, mask_root: str | Path | None = None,
                        eval_size: int = EVAL_SIZE, cam_curve_interval: float = CAM_CURVE_INTERVAL, normalize: bool = False,
                        batch_size: int = 32, num_workers: int = AUTO, progress: bool = True,
                        mask_cache: str | Path | None = None) -> dict:
    """MaxBoxAcc/MaxBoxAccV2 (box data) or PxAP (mask data) of the saved maps, in percent.

    ``batch_size`` maps make one job of a worker; ``num_workers`` processes score them
    (:data:`AUTO`: one per CPU of this process, fewer when there are too few maps to pay for
    starting them, see :data:`MIN_MAPS_PER_WORKER`; 0 or 1: in this process). ``mask_cache``:
    a directory keeping the decoded masks for the next evaluations (:class:`fcam.data.MaskCache`).
    """
    metadata.require_ground_truth()
    maps = SavedMaps(Path(scoremap_root), eval_size, normalize)
    if not maps.root.is_dir():
        raise FcamError(f"--scoremap-root: no such directory: {maps.root}")
    if metadata.kind == "mask" and mask_root is None:
        raise FcamError(f"{metadata.dataset} has mask annotations: pass --mask-root")
    ids = metadata.image_ids
    chunks = [slice(start, start + batch_size) for start in range(0, len(ids), batch_size)]
    bar = tqdm(total=len(ids), desc="evaluate", disable=None if progress else True, dynamic_ncols=True)
    workers = resolve_num_workers(num_workers)
    if num_workers == AUTO:
        workers = min(workers, len(ids) // MIN_MAPS_PER_WORKER[metadata.kind])
    with ScoringPool(workers) as pool:
        if metadata.kind == "box":
            evaluator = BoxEvaluator(cam_curve_interval=cam_curve_interval)
            gt_boxes = metadata.gt_boxes(eval_size)
            for chunk in chunks:
                pool.submit(_adder(evaluator.add_hits, bar), score_saved_boxes, maps, ids[chunk], gt_boxes[chunk],
                            evaluator.thresholds, evaluator.iou_thresholds)
        else:
            evaluator = MaskEvaluator(cam_curve_interval=cam_curve_interval)
            for chunk in chunks:
                masks = [metadata.masks[image_id] for image_id in ids[chunk]]
                pool.submit(_adder(evaluator.add_histograms, bar), score_saved_masks, maps, ids[chunk], masks,
                            mask_root, metadata.dataset, evaluator.edges, mask_cache)
    bar.close()
    return evaluator.compute()


def _adder(add, bar: tqdm):
    def on_result(per_image: np.ndarray) -> None:
        add(per_image)
        bar.update(len(per_image))

    return on_result
