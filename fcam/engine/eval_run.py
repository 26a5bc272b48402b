"""Evaluating trained models with several map methods in one run (``fcam-eval --checkpoint``):
metrics per method, saved score maps, example figures and, when methods are compared, the
threshold-sensitivity curves and activation histograms of the paper's Fig. 5 and 6."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fcam.config import Config
from fcam.data import Metadata
from fcam.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fcam.engine.distributed import DistContext
from fcam.engine.evaluation import MapFn, cam_map_fn, evaluate_localization, fcam_map_fn
from fcam.engine.loaders import eval_loader
from fcam.engine.report import format_table, write_report
from fcam.engine.scoring import ScoringPool, resolve_num_workers
from fcam.errors import FcamError
from fcam.metrics.reference import boxes_at_threshold
from fcam.models import FCAMModel, WSOLClassifier
from fcam.viz import plot_box_examples, plot_histograms, plot_mask_examples, plot_threshold_sensitivity
from fcam.viz.localization import MAX_ROWS

HISTOGRAM_IMAGES = 256   # activation histograms use the first images' maps, every 4th pixel
HISTOGRAM_STRIDE = 4


@dataclass
class MapCollector:
    """Sees every batch's maps once: saves them as .npy, keeps the maps of a few images spread
    over the split for figures and a bounded sample of values for the histograms (memory stays
    flat over the split)."""

    scoremap_dir: Path | None
    example_indices: set[int]
    examples: list[dict] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    seen: int = 0

    def __call__(self, batch: dict, maps: np.ndarray) -> None:
        for i, image_id in enumerate(batch["image_id"]):
            if self.scoremap_dir is not None:
                path = self.scoremap_dir / f"{image_id}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, maps[i])
            index = int(batch["index"][i])
            if index in self.example_indices:
                image = _display_image(batch["image"][i].numpy(), maps[i].shape)
                example = {"index": index, "map": maps[i], "image": image}
                if "gt_mask" in batch:
                    example.update(gt_mask=batch["gt_mask"][i].numpy(), ignore=batch["ignore_mask"][i].numpy())
                self.examples.append(example)
            if self.seen < HISTOGRAM_IMAGES:
                self.values.append(maps[i][::HISTOGRAM_STRIDE, ::HISTOGRAM_STRIDE].ravel())
            self.seen += 1


def _display_image(normalized: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The network input back to uint8 RGB at the map's size (for figures)."""
    image = np.clip((normalized.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255.0, 0, 255).astype(np.uint8)
    if image.shape[:2] != size:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return image


def _f1_threshold(curves: dict) -> float:
    """The operating point (a threshold in [0, 1)) with the best F1 on the precision-recall
    curve, for the mask figures; points with no predicted pixel (precision 0/0) are skipped."""
    thresholds = np.asarray(curves["thresholds"])
    precision, recall = np.asarray(curves["precision"]), np.asarray(curves["recall"])
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where(np.isfinite(f1) & (thresholds < 1.0), f1, -1.0)
    return float(thresholds[int(np.argmax(f1))])


def _example_figures(collector: MapCollector, metrics: dict, metadata: Metadata, eval_size: int,
                     folder: Path, name: str) -> None:
    """``examples.png`` (then ``examples_2.png``, ...; 16 images a figure) in the paper's style."""
    gt = metadata.gt_boxes(eval_size) if metadata.kind == "box" else None
    for page, start in enumerate(range(0, len(collector.examples), MAX_ROWS)):
        ex = collector.examples[start:start + MAX_ROWS]
        path = folder / ("examples.png" if page == 0 else f"examples_{page + 1}.png")
        images, maps = [e["image"] for e in ex], [e["map"] for e in ex]
        titles = [f"{name}: {Path(metadata.image_ids[e['index']]).name}" for e in ex]
        if gt is not None:
            threshold = float(metrics["best_threshold"])
            predicted = [boxes_at_threshold(m, threshold, multi_contour=False) for m in maps]
            plot_box_examples(images, maps, threshold, predicted, [gt[e["index"]] for e in ex], path, titles=titles)
        else:
            plot_mask_examples(images, maps, _f1_threshold(metrics["curves"]), [e["gt_mask"] for e in ex],
                               [e["ignore"] for e in ex], path, titles=titles)


def map_function(method: str, cfg: Config, ctx: DistContext, classifier: WSOLClassifier | None,
                 fcam_model: FCAMModel | None) -> MapFn:
    if method == "fcam":
        if fcam_model is None:
            raise FcamError("--method fcam needs --decoder CKPT (a checkpoint written by fcam-train-decoder)")
        return fcam_map_fn(fcam_model, cfg.data.eval_size, ctx.device)
    model = classifier if classifier is not None else fcam_model.classifier
    return cam_map_fn(model, method, cfg.data.eval_size, cfg.cam.interpolation, ctx.device,
                      cfg.cam.gradcampp_variant)


def evaluate_methods(cfg: Config, ctx: DistContext, metadata: Metadata, methods: list[str], out_dir: Path,
                     classifier: WSOLClassifier | None = None, fcam_model: FCAMModel | None = None,
                     save_scoremaps: bool = False, visualize: int = 0,
                     provenance: dict | None = None) -> dict[str, dict]:
    """Evaluate each method on ``metadata``'s split; write one folder per method (metrics.json,
    provenance.json: ``provenance`` and the method, curves, figures, score maps) and, for several
    methods, comparison figures in ``out_dir``."""
    loader = eval_loader(cfg, metadata, ctx)
    count = len(metadata.image_ids)
    example_indices = set(np.linspace(0, count - 1, min(visualize, count)).round().astype(int).tolist())
    results: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    values: dict[str, np.ndarray] = {}
    # One pool of scoring workers for every method of the run.
    with ScoringPool(resolve_num_workers(cfg.eval.num_workers, ctx.local_world_size)) as pool:
        for method in methods:
            method_dir = out_dir / method if len(methods) > 1 else out_dir
            collector = MapCollector(method_dir / "scoremaps" if save_scoremaps else None,
                                     example_indices if ctx.is_main else set())
            metrics = evaluate_localization(map_function(method, cfg, ctx, classifier, fcam_model), loader,
                                            metadata, ctx, cfg.data.eval_size, cfg.eval.cam_curve_interval,
                                            on_batch=collector, desc=method, pool=pool)
            if not ctx.is_main:
                continue
            results[method] = write_report(metrics, method_dir,
                                           title=f"{method} on {metadata.dataset} {metadata.split}",
                                           provenance={"method": method, **(provenance or {})})
            curves[method] = metrics["curves"]
            values[method] = np.concatenate(collector.values) if collector.values else np.zeros(1)
            if visualize:
                _example_figures(collector, metrics, metadata, cfg.data.eval_size, method_dir, method)
    if ctx.is_main and len(methods) > 1:
        if metadata.kind == "box":
            plot_threshold_sensitivity(curves, out_dir / "threshold_sensitivity.png", key="v1_iou50")
        plot_histograms(values, out_dir / "histograms.png")
    if ctx.is_main:
        print(format_table(results))
    return results
