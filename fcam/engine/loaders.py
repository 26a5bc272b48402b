"""DataLoaders built from the config: shuffled (and sharded under DDP) for training, sharded
without padding for evaluation so that every image is scored exactly once over all ranks; an
item's FcamError (a missing image, say) reaches the caller as it was raised, also from a worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from torch.utils.data.distributed import DistributedSampler

from fcam.config import Config
from fcam.data import MaskCache, Metadata, WSOLDataset, load_gt_mask, load_metadata
from fcam.data.transforms import complete_batch
from fcam.engine.distributed import DistContext
from fcam.engine.scoring import available_cpus
from fcam.errors import FcamError


@dataclass(frozen=True)
class UserError:
    """An FcamError raised while reading an item, carried to the main process as a value."""

    message: str


class _CatchUserErrors(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except FcamError as exc:
            return UserError(str(exc))


def _collate(items: list) -> Any:
    errors = [item for item in items if isinstance(item, UserError)]
    return errors[0] if errors else default_collate(items)


class FcamDataLoader(DataLoader):
    """A DataLoader whose items' FcamErrors are raised by the caller's loop as FcamError with their
    own message, whether the item was read by a worker process or not (PyTorch re-raises a worker's
    exception with the worker's traceback folded into the message)."""

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(_CatchUserErrors(dataset), collate_fn=_collate, **kwargs)

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, UserError):
                raise FcamError(batch.message)
            yield batch


def split_metadata(cfg: Config, split: str) -> Metadata:
    return load_metadata(cfg.data.metadata_root, cfg.data.dataset, split)


def num_classes(cfg: Config, train_meta: Metadata) -> int:
    """``data.num_classes``, or max label + 1 of the training split when it is 0."""
    return cfg.data.num_classes or train_meta.num_classes


def image_root(cfg: Config) -> Path:
    return Path(cfg.data.root) / cfg.data.dataset


MAX_AUTO_WORKERS = 8


def resolve_num_workers(num_workers: int, local_world_size: int = 1) -> int:
    """``data.num_workers``, with -1 meaning min(8, CPU cores available to this process divided
    by the processes on this machine), and 0 (load in the main process) when that leaves one
    core: a single worker would only compete with the main process for it."""
    if num_workers < -1:
        raise FcamError(f"config key 'data.num_workers' must be -1 (auto) or >= 0, got {num_workers}")
    if num_workers >= 0:
        return num_workers
    per_rank = max(1, available_cpus() // max(1, local_world_size))
    return 0 if per_rank == 1 else min(MAX_AUTO_WORKERS, per_rank)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: a partition of the dataset with no repeated sample
    (DistributedSampler pads with repeats, which would bias the metrics)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class UInt8Loader(FcamDataLoader):
    """A DataLoader over ``WSOLDataset(uint8=True)`` items whose batches come out with float
    ``raw`` and normalized ``image`` made on ``device`` (:func:`complete_batch`): workers send
    uint8 images, an eighth of the float pair, which ``scripts/bench_data.py`` measures as the
    largest cost of a worker after decoding."""

    def __init__(self, *args, device: torch.device | str = "cpu", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = device

    def __iter__(self):
        for batch in super().__iter__():
            yield complete_batch(batch, self.device)


class EvalItems(Dataset):
    """A WSOLDataset whose items also carry the ground truth at the evaluation size:
    the boxes' index into the metadata, or the protocol's mask and ignore mask (read in the
    loader's workers, not on the main process)."""

    def __init__(self, dataset: WSOLDataset, metadata: Metadata, mask_root: str, eval_size: int,
                 mask_cache: str = "") -> None:
        self.dataset = dataset
        self.metadata = metadata
        self.mask_root = mask_root
        self.eval_size = eval_size
        self.mask_cache = MaskCache(mask_cache, eval_size) if mask_cache and metadata.kind == "mask" else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {**item, **mask_targets(self.metadata, item["image_id"], self.mask_root, self.eval_size,
                                       self.mask_cache)}


def mask_targets(metadata: Metadata, image_id: str, mask_root: str | Path | None, size: int,
                 cache: MaskCache | None = None) -> dict:
    """``gt_mask`` and ``ignore_mask`` tensors of an image at the evaluation size (mask data,
    read from ``<mask_root>/<dataset>/`` or ``cache``), or nothing (box data). A split without
    ground truth is an error."""
    metadata.require_ground_truth()
    if metadata.kind != "mask":
        return {}
    paths, ignore = metadata.masks[image_id]
    mask, ignored = load_gt_mask(mask_root, paths, ignore, size, dataset=metadata.dataset, cache=cache)
    return {"gt_mask": torch.from_numpy(mask), "ignore_mask": torch.from_numpy(ignored)}


def train_loader(cfg: Config, metadata: Metadata, ctx: DistContext, batch_size: int,
                 classes: int | None = None) -> DataLoader:
    """The shuffled training loader of this rank (``ctx``): ``len(dataset) // world_size`` images
    per rank per epoch, in batches of ``batch_size``.

    The last partial batch is kept, as wsolevaluation's loader does (``drop_last=False``), except
    when it would hold a single image: BatchNorm in train mode fails on a batch of one whose map
    is 1x1 (one value per channel) and estimates nothing from it otherwise, so that image is left
    out of the epoch. Every rank has as many images, so all
    ranks take the same decision and run the same number of steps.
    """
    dataset = WSOLDataset(image_root(cfg), metadata, train=True, resize_size=cfg.data.resize_size,
                          crop_size=cfg.data.crop_size, num_classes=classes, train_backend=cfg.data.train_backend,
                          uint8=True)
    per_rank = len(dataset) // ctx.world_size
    if per_rank < 2:
        raise FcamError(f"split '{metadata.split}' of {metadata.dataset} has {len(dataset)} images, fewer than "
                        f"2 per process ({ctx.world_size} processes)")
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=cfg.train.seed, drop_last=True)
    return UInt8Loader(dataset, batch_size=batch_size, sampler=sampler, drop_last=per_rank % batch_size == 1,
                       device=ctx.device, num_workers=resolve_num_workers(cfg.data.num_workers, ctx.local_world_size),
                       pin_memory=ctx.device.type == "cuda", persistent_workers=False)


def eval_loader(cfg: Config, metadata: Metadata, ctx: DistContext, classes: int | None = None) -> DataLoader:
    metadata.require_ground_truth()
    dataset = WSOLDataset(image_root(cfg), metadata, train=False, resize_size=cfg.data.resize_size,
                          crop_size=cfg.data.crop_size, num_classes=classes, uint8=True)
    items = EvalItems(dataset, metadata, cfg.data.mask_root, cfg.data.eval_size, cfg.eval.mask_cache)
    sampler = ShardSampler(len(items), ctx.rank, ctx.world_size)
    # Completed on the CPU: figures read evaluation batches' images with .numpy().
    return UInt8Loader(items, batch_size=cfg.train.eval_batch_size, sampler=sampler,
                       num_workers=resolve_num_workers(cfg.data.num_workers, ctx.local_world_size))
