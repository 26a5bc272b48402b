"""The two training recipes: the WSOL classifier (fcam-train-cls) and the F-CAM decoder on top
of a frozen classifier (fcam-train-decoder). Each says what a step, an epoch's end and a
validation are; :func:`fcam.engine.trainer.fit` runs them."""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from fcam.config import Config, config_from_dict
from fcam.data import Metadata
from fcam.engine.checkpoint import load_checkpoint
from fcam.engine.distributed import DistContext
from fcam.engine.evaluation import OnBatch, cam_map_fn, evaluate_localization, fcam_map_fn
from fcam.engine.loaders import eval_loader, train_loader
from fcam.engine.schedule import Schedule, StepwiseLR
from fcam.engine.seed_cams import seed_cams
from fcam.errors import FcamError
from fcam.losses import DenseCRFLoss, ExtendedLogBarrier, FCAMLoss, SeedSampler, SizeConstraintLoss
from fcam.models import FCAMModel, WSOLClassifier, build_classifier, build_fcam


def selection_metric(metadata: Metadata, rule: str = "val") -> str:
    """The validation score that picks ``best.pt``. Rule 'val' (and 'last', for the log): the
    protocol's, MaxBoxAcc on box data and PxAP on mask data. Rule 'val_v2': MaxBoxAccV2 on box data
    (the mean over IoU 30/50/70 moves in finer steps than MaxBoxAcc on a small validation split, so
    it tells epochs apart with less noise; docs/recipe.md §7), PxAP on mask data."""
    if metadata.kind == "mask":
        return "PxAP"
    return "MaxBoxAccV2" if rule == "val_v2" else "MaxBoxAcc"


def _wrap(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def new_layers_mult(cfg: Config, is_main: bool) -> float:
    """``train.new_layers_lr_mult``, or 1 with ``model.pretrained=none``: with a random init every
    layer is new, so the faster group has no meaning (a one-line note says so on rank 0)."""
    mult = cfg.train.new_layers_lr_mult
    if cfg.model.pretrained != "none" or mult == 1:
        return mult
    if is_main:
        print(f"note: train.new_layers_lr_mult={mult:g} is not applied with model.pretrained=none: every layer is new",
              file=sys.stderr)
    return 1.0


STALL_EPOCHS = 3  # a loss no lower after this many epochs than after the first one is flagged


def divergence_warning(epoch_losses: list[float], num_classes: int, cfg: Config) -> str | None:
    """A warning when the first epochs' mean training losses (one per epoch so far) look like
    divergence, naming the likely cause; None otherwise.

    After epoch 1: a loss above ``2 ln(K)`` (``ln(K)`` is the loss of a uniform guess). After
    epoch :data:`STALL_EPOCHS`: a loss no lower than epoch 1's.
    """
    t = cfg.train
    if cfg.model.pretrained == "none":
        cause = f"train.lr={t.lr:g} too high for a random init"
    elif t.new_layers_lr_mult > 1:
        cause = (f"train.lr={t.lr:g} too high, or its x{t.new_layers_lr_mult:g} on the new layers "
                 f"(train.new_layers_lr_mult)")
    else:
        cause = f"train.lr={t.lr:g} too high"
    if t.warmup_epochs == 0:
        cause += "; train.warmup_epochs may help"
    chance = math.log(num_classes)
    if len(epoch_losses) == 1 and num_classes > 1 and epoch_losses[0] > 2 * chance:
        return (f"mean training loss {epoch_losses[0]:.3g} after epoch 1 is above 2 x ln(K) = {2 * chance:.3g} "
                f"(K={num_classes} classes): training diverges; likely cause: {cause}")
    if len(epoch_losses) == STALL_EPOCHS and epoch_losses[-1] >= epoch_losses[0]:
        return (f"mean training loss did not decrease over the first {STALL_EPOCHS} epochs "
                f"({epoch_losses[0]:.3g} -> {epoch_losses[-1]:.3g}); likely cause: {cause} (or too low if it "
                f"stays near ln(K) = {chance:.3g})")
    return None


class ClassifierTask:
    """Cross-entropy training of encoder + GAP + linear, selected on validation localization
    with the configured CAM method (SGD with Nesterov momentum, x10 learning rate on the new
    layers, a step or cosine schedule set per step; :mod:`fcam.engine.schedule`)."""

    kind = "classifier"

    def __init__(self, cfg: Config, ctx: DistContext, train_meta: Metadata, val_meta: Metadata,
                 num_classes: int) -> None:
        self.cfg, self.ctx, self.val_meta = cfg, ctx, val_meta
        self.selection_key = selection_metric(val_meta, cfg.train.selection)
        self.select_last = cfg.train.selection == "last"
        self.selection_burn_in = cfg.train.selection_burn_in
        t = cfg.train
        if t.nesterov and t.momentum <= 0:
            raise FcamError(f"config key 'train.nesterov' is true but train.momentum is {t.momentum:g}: Nesterov needs "
                            f"momentum > 0 (or set train.nesterov=false)")
        self.model = build_classifier(cfg.model.backbone, num_classes, cfg.model.pretrained,
                                      cfg.model.output_stride).to(ctx.device)
        if ctx.is_main:
            print(self.model.summary)
        self.net = _wrap(self.model, ctx)
        pretrained, new = self.model.parameter_groups()
        mult = new_layers_mult(cfg, ctx.is_main)
        self.optimizer = torch.optim.SGD(
            [{"params": pretrained, "lr": t.lr}, {"params": new, "lr": t.lr * mult}],
            lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov)
        self.train_loader = train_loader(cfg, train_meta, ctx, t.batch_size, num_classes)
        self.scheduler = StepwiseLR(self.optimizer, Schedule.from_config(t, len(self.train_loader)))
        self.val_loader = eval_loader(cfg, val_meta, ctx, num_classes)
        self.epoch_losses: list[float] = []

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["image"].to(self.ctx.device, non_blocking=True)
        labels = batch["label"].to(self.ctx.device, non_blocking=True)
        return {"loss": F.cross_entropy(self.net(images), labels)}

    def set_epoch(self, epoch: int) -> None:
        self.train_loader.sampler.set_epoch(epoch)

    def end_epoch(self, train_stats: dict[str, float]) -> None:
        """Record this rank's mean training loss; rank 0 warns when it looks like divergence."""
        self.epoch_losses.append(train_stats["loss"])
        warning = divergence_warning(self.epoch_losses, self.model.num_classes, self.cfg)
        if warning and self.ctx.is_main:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

    def validate(self, on_batch: OnBatch | None = None) -> dict[str, Any]:
        fn = cam_map_fn(self.model, self.cfg.cam.method, self.cfg.data.eval_size, self.cfg.cam.interpolation,
                        self.ctx.device, self.cfg.cam.gradcampp_variant)
        return evaluate_localization(fn, self.val_loader, self.val_meta, self.ctx, self.cfg.data.eval_size,
                                     self.cfg.eval.cam_curve_interval, on_batch=on_batch, desc="validate",
                                     num_workers=self.cfg.eval.num_workers)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "num_classes": self.model.num_classes,
                "epoch_losses": self.epoch_losses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch_losses = list(state.get("epoch_losses", []))


def _load_model(path: str, kind: str, build) -> tuple[torch.nn.Module, Config]:
    """Rebuild a model from an fcam checkpoint of ``kind``: its config names the backbone."""
    state = load_checkpoint(path, kind=kind, map_location="cpu")
    cfg = config_from_dict(state["config"], source=str(path))
    model = build(build_classifier(cfg.model.backbone, state["task"]["num_classes"], "none", cfg.model.output_stride))
    try:
        model.load_state_dict(state["task"]["model"])
    except RuntimeError as exc:
        raise FcamError(f"{path}: weights do not fit backbone '{cfg.model.backbone}' "
                        f"({str(exc).splitlines()[0]})") from None
    return model.eval(), cfg


def load_classifier(path: str, device: torch.device) -> tuple[WSOLClassifier, Config]:
    """A trained classifier and the config it was trained with, from an fcam-train-cls checkpoint."""
    model, cfg = _load_model(path, "classifier", lambda classifier: classifier)
    return model.to(device), cfg


def load_fcam(path: str, device: torch.device) -> tuple[FCAMModel, Config]:
    """A trained F-CAM model (frozen classifier + decoder) from an fcam-train-decoder checkpoint."""
    model, cfg = _load_model(path, "fcam", build_fcam)
    return model.to(device), cfg


class DecoderTask:
    """F-CAM: the U-Net decoder trained on a frozen classifier from CAM seeds, the dense CRF
    loss and the absolute size constraint (Eq. 3 of the paper; docs/method.md §2-6)."""

    kind = "fcam"

    def __init__(self, cfg: Config, ctx: DistContext, train_meta: Metadata, val_meta: Metadata,
                 classifier: WSOLClassifier) -> None:
        self.cfg, self.ctx, self.val_meta = cfg, ctx, val_meta
        self.selection_key = selection_metric(val_meta, cfg.fcam.selection)
        self.select_last = cfg.fcam.selection == "last"
        self.selection_burn_in = cfg.fcam.selection_burn_in
        self.model = build_fcam(classifier).to(ctx.device)
        if ctx.is_main:
            print(classifier.summary)
        self.net = _wrap(self.model, ctx)
        f = cfg.fcam
        self.optimizer = torch.optim.SGD(self.model.decoder.parameters(), lr=f.lr, momentum=f.momentum,
                                         weight_decay=f.weight_decay, nesterov=True)
        self.seeds = SeedSampler(n_seeds=f.n_seeds, bg_fraction=f.bg_fraction, ksz=f.ksz, erode_size=f.erode_size,
                                 color_ratio=f.seed_color_ratio, color_bits=f.seed_color_bits)
        self.elb = ExtendedLogBarrier(t_init=f.elb_t_init, t_mult=f.elb_t_mult, t_max=f.elb_t_max)
        crf = DenseCRFLoss(weight=f.crf_weight, sigma_rgb=f.crf_sigma_rgb, sigma_xy=f.crf_sigma_xy,
                           scale_factor=f.crf_scale, backend=f.crf_backend,
                           reference_size=f.crf_reference_size) if f.crf_weight > 0 else None
        size = SizeConstraintLoss(weight=f.size_weight, barrier=self.elb) if f.size_weight > 0 else None
        self.criterion = FCAMLoss(alpha=f.alpha, crf=crf, size=size)
        self.generator = torch.Generator(device=ctx.device)
        classes = classifier.num_classes
        self.train_loader = train_loader(cfg, train_meta, ctx, f.batch_size, classes)
        self.val_loader = eval_loader(cfg, val_meta, ctx, classes)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["image"].to(self.ctx.device, non_blocking=True)
        labels = batch["label"].to(self.ctx.device, non_blocking=True)
        raw = batch["raw"].to(self.ctx.device, non_blocking=True)
        # One classifier pass: the seeds' CAM comes from the features of the F-CAM forward.
        out = self.net(images)
        cams = seed_cams(self.model.classifier, images, labels, out["features"], self.cfg.cam.method,
                         gradcampp_variant=self.cfg.cam.gradcampp_variant)
        seeds = self.seeds(cams, generator=self.generator, images=raw)
        terms = self.criterion(out["seg_logits"].float(), raw, seeds)
        return {"loss": terms["total"], **{k: v for k, v in terms.items() if k != "total"}}

    def set_epoch(self, epoch: int) -> None:
        self.train_loader.sampler.set_epoch(epoch)
        # Seeds are drawn from their own generator, re-seeded per epoch and rank, so a resumed
        # run samples the same pixels as an uninterrupted one.
        self.generator.manual_seed(self.cfg.train.seed * 100_003 + epoch * 1_009 + self.ctx.rank)

    def end_epoch(self, train_stats: dict[str, float]) -> None:
        self.elb.step()

    def validate(self, on_batch: OnBatch | None = None) -> dict[str, Any]:
        fn = fcam_map_fn(self.model, self.cfg.data.eval_size, self.ctx.device)
        return evaluate_localization(fn, self.val_loader, self.val_meta, self.ctx, self.cfg.data.eval_size,
                                     self.cfg.eval.cam_curve_interval, on_batch=on_batch, desc="validate",
                                     num_workers=self.cfg.eval.num_workers)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "elb": self.elb.state_dict(), "num_classes": self.model.classifier.num_classes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.elb.load_state_dict(state["elb"])
