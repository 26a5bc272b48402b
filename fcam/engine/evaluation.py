"""Localization evaluation of a model through the protocol's evaluator, streamed batch by batch.

A *map function* turns a batch into score maps at the evaluation size (float64 in [0,1]) and
the logits; this module feeds them to :class:`BoxEvaluator` or :class:`MaskEvaluator`, gathers
the additive counts over ranks and returns the metrics, equal to those of a one-process run.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from fcam.cams import CamOptions, explain
from fcam.data import Metadata
from fcam.engine.distributed import DistContext, all_reduce_arrays
from fcam.engine.scoring import AUTO, ScoringPool, resolve_num_workers
from fcam.metrics import (BoxEvaluator, MaskEvaluator, box_hits_from_levels, gray_levels, normalize_scoremap,
                          pixel_histograms, resize_scoremap, topk_correct)
from fcam.metrics.scoremap import check_score_range
from fcam.models import FCAMModel, WSOLClassifier
from fcam.models.inference import inference_copy
from fcam.protocol import CAM_CURVE_INTERVAL

MapFn = Callable[[dict], tuple[np.ndarray, torch.Tensor]]
OnBatch = Callable[[dict, np.ndarray], None]


def cam_map_fn(model: WSOLClassifier, method: str, eval_size: int, interpolation: str,
               device: torch.device, gradcampp_variant: str = "paper") -> MapFn:
    """Maps of one CAM method for the GT class, as the reference scores them: the low-res map is
    resized to the evaluation size, then min-max normalized (float64). The logits are those of
    the forward pass the maps came from; ``gradcampp_variant``: see ``fcam.cams.CamOptions``."""
    options = CamOptions(gradcampp_variant=gradcampp_variant)

    def fn(batch: dict) -> tuple[np.ndarray, torch.Tensor]:
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        result = explain(model, images, labels, method, model.cam_target_layer, fc=model.fc, options=options)
        maps = resize_scoremap(result.maps.double().cpu().numpy(), eval_size, interpolation)
        return normalize_scoremap(maps), result.logits

    return fn


def fcam_map_fn(model: FCAMModel, eval_size: int, device: torch.device) -> MapFn:
    """F-CAM maps: the decoder's foreground probability, used as it is (no min-max).

    The maps come from an inference copy of ``model`` as it is now (BatchNorm folded, eval
    statistics; :func:`fcam.models.inference.inference_copy`): make a new function after
    training it further.
    """
    fast = inference_copy(model)

    def fn(batch: dict) -> tuple[np.ndarray, torch.Tensor]:
        images = batch["image"].to(device, non_blocking=True)
        with torch.no_grad():
            out = fast(images)
            fg = torch.softmax(out["seg_logits"].float(), dim=1)[:, 1:2]
            if fg.shape[-1] != eval_size or fg.shape[-2] != eval_size:
                fg = F.interpolate(fg, size=(eval_size, eval_size), mode="bilinear", align_corners=False)
        return fg[:, 0].double().cpu().numpy(), out["logits"]

    return fn


def make_evaluator(metadata: Metadata, cam_curve_interval: float) -> BoxEvaluator | MaskEvaluator:
    if metadata.kind == "mask":
        return MaskEvaluator(cam_curve_interval=cam_curve_interval)
    return BoxEvaluator(cam_curve_interval=cam_curve_interval)


def evaluate_localization(map_fn: MapFn, loader: DataLoader, metadata: Metadata, ctx: DistContext,
                          eval_size: int, cam_curve_interval: float = CAM_CURVE_INTERVAL,
                          on_batch: OnBatch | None = None,
                          desc: str = "eval", num_workers: int = AUTO, pool: ScoringPool | None = None) -> dict:
    """Score every image of ``loader`` (each rank its shard) and return the gathered metrics.

    ``on_batch(batch, maps)`` sees every batch's maps (saving them, figures) without holding
    them all. Metrics are percentages; ``cls_acc``, ``top1_loc``, ``top5_loc`` and their
    ``*_maxcurve`` variants are added.

    The per-image scoring runs in ``pool`` if given (e.g. one pool for several methods), else in
    a pool of ``num_workers`` processes created for this call (:data:`AUTO`: this process's CPUs
    divided among the local ranks; 0 or 1: in this process), while the next batch's maps are
    computed.
    """
    if pool is None:
        with ScoringPool(resolve_num_workers(num_workers, ctx.local_world_size)) as own_pool:
            return evaluate_localization(map_fn, loader, metadata, ctx, eval_size, cam_curve_interval, on_batch,
                                         desc, pool=own_pool)
    evaluator = make_evaluator(metadata, cam_curve_interval)
    gt_boxes = metadata.gt_boxes(eval_size) if metadata.kind == "box" else None
    cls_hits = np.zeros(1, dtype=np.float64)
    for batch in tqdm(loader, desc=desc, leave=False, disable=None if ctx.is_main else True, dynamic_ncols=True):
        maps, logits = map_fn(batch)
        correct = topk_correct(logits.float().cpu(), batch["label"], ks=(1, 5))
        cls_hits += correct[1].sum()
        if gt_boxes is not None:
            boxes = [gt_boxes[i] for i in batch["index"].tolist()]
            # Box metrics only see the uint8 levels: 1/8 of the bytes to send to a worker.
            levels = gray_levels(_checked_range(maps))
            pool.submit(partial(evaluator.add_hits, top1_correct=correct[1], top5_correct=correct[5]),
                        box_hits_from_levels, levels, boxes, evaluator.thresholds, evaluator.iou_thresholds)
        else:
            pool.submit(evaluator.add_histograms, pixel_histograms, maps, batch["gt_mask"].numpy(),
                        batch["ignore_mask"].numpy(), evaluator.edges)
        if on_batch is not None:
            on_batch(batch, maps)
    pool.drain()
    state = evaluator.state()
    state["_cls_hits"] = cls_hits
    state = all_reduce_arrays(state, ctx)
    cls_hits = state.pop("_cls_hits")
    evaluator.load_state(state)
    metrics = evaluator.compute()
    metrics["cls_acc"] = 100.0 * float(cls_hits[0]) / max(len(metadata.image_ids), 1)
    return metrics


def _checked_range(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    check_score_range(maps)
    return maps
