"""Typed run configuration: dataclasses loaded from YAML with dotted ``KEY=VALUE`` overrides.

One :class:`Config` serves both training commands: ``fcam-train-cls`` reads ``data``, ``model``,
``cam``, ``train``, ``eval`` and ``log``; ``fcam-train-decoder`` reads ``fcam`` (the decoder's loss
and optimizer) in place of ``train``, but for ``train.seed``, ``train.amp`` and
``train.eval_batch_size`` (:data:`TRAIN_CLS`, :data:`TRAIN_DECODER`). Unknown keys, wrong types and
values outside their choices are :class:`FcamError` naming the key and the file.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fcam.cams.registry import CAM_METHODS, GRADCAMPP_VARIANTS
from fcam.errors import FcamError
from fcam.interpolation import INTERPOLATIONS
from fcam.protocol import CAM_CURVE_INTERVAL, EVAL_SIZE
from fcam.models.registry import BACKBONES, TORCHVISION_PREFIX, backbone_problem, output_stride_problem


def _opt(default: Any, help: str, choices: tuple | None = None,
         check: Callable[[Any], str | None] | None = None) -> Any:
    """A config field with its documentation (and allowed values) attached.

    ``check`` validates values that no list of choices can hold: it returns why a value is
    wrong (completing "config key 'KEY' ...") or None.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "check": check})


def _at_least(bound: float) -> Callable[[Any], str | None]:
    """A ``check`` for :func:`_opt`: values below ``bound`` are refused."""
    return lambda value: None if value >= bound else f"must be >= {bound}, got {value!r}"


def _fraction(value: float) -> str | None:
    """A ``check`` for :func:`_opt`: a fraction in [0, 1)."""
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value!r}"


@dataclass
class DataConfig:
    dataset: str = _opt("CUB", "Dataset folder name under root, metadata_root and mask_root: CUB, ILSVRC, "
                        "OpenImages or any other (e.g. written by fcam-prepare). Boxes or masks follow from "
                        "its localization.txt.")
    root: str = _opt("data/images", "Image root: images are read from ROOT/DATASET/IMAGE_ID.")
    metadata_root: str = _opt("metadata", "wsolevaluation metadata: METADATA_ROOT/DATASET/SPLIT/*.txt.")
    mask_root: str = _opt("data/masks", "Mask root (mask data): masks are read from MASK_ROOT/DATASET/MASK_PATH.")
    resize_size: int = _opt(256, "Training images are resized to this square size before the random crop.")
    crop_size: int = _opt(224, "Training crop size; evaluation images are resized to it (no crop).")
    eval_size: int = _opt(EVAL_SIZE, f"Size at which score maps are scored (the protocol fixes {EVAL_SIZE}).")
    num_classes: int = _opt(0, "Number of classes; 0 takes max label + 1 of the training split.")
    num_workers: int = _opt(-1, "DataLoader worker processes per rank; -1: min(8, CPU cores available per "
                            "local rank), 0 when that is one core.")
    train_backend: str = _opt("fast", "Decoding and resizing of training images: 'fast' (OpenCV decoding, "
                              "torchvision's antialiased resize: about 2x faster, 1-2 grey levels off PIL on ~0.15% of values) "
                              "or 'pil' (exactly wsolevaluation's). Evaluation always uses PIL.", ("fast", "pil"))
    train_split: str = _opt("train", "Split used for training.")
    val_split: str = _opt("val", "Split used for per-epoch validation and model selection.")


@dataclass
class ModelConfig:
    backbone: str = _opt("resnet50", f"Backbone: a WSOL trunk ({', '.join(BACKBONES)}: 28x28 top map at 224) "
                         f"or {TORCHVISION_PREFIX}NAME, any torchvision classification model (see Backbones).",
                         check=backbone_problem)
    pretrained: str = _opt("imagenet", "'imagenet' (torchvision weights), 'none' (random init) or a weights file.")
    output_stride: int = _opt(0, "Stride of the top map: 0 keeps the backbone's own; 8 or 16 dilate the last "
                              "stages of a torchvision ResNet-50/101/152, ResNeXt or Wide ResNet.",
                              check=output_stride_problem)


@dataclass
class CamConfig:
    method: str = _opt("cam", "CAM method for validation (fcam-train-cls) and for the seeds (fcam-train-decoder); "
                       "scorecam costs one forward pass per channel of the top map.", tuple(CAM_METHODS))
    interpolation: str = _opt("bicubic", "Upsampling of low-resolution CAMs to eval_size: 'bicubic' "
                              "(OpenCV, wsolevaluation), 'bilinear' (torch, F-CAM code) or 'torch-bicubic'.",
                              tuple(INTERPOLATIONS))
    gradcampp_variant: str = _opt("paper", "GradCAM++ and Smooth-GradCAM++ formula (validation, seeds, fcam-eval): "
                                  "'paper' (Chattopadhay et al.'s alpha) or 'fcam-wsol' (what the F-CAM code and "
                                  "torchcam compute: alpha = g^2, weights = sum g^2 relu(g)).", GRADCAMPP_VARIANTS)


@dataclass
class TrainConfig:
    epochs: int = _opt(50, "Classifier training epochs.")
    batch_size: int = _opt(32, "Batch size per process.")
    lr: float = _opt(1.7e-3, "SGD learning rate of the pretrained layers.")
    new_layers_lr_mult: float = _opt(10.0, "Learning-rate multiplier of the layers wsolevaluation trains faster "
                                     "(fc; ResNet layer4, VGG conv6, SPG blocks). Not applied with "
                                     "model.pretrained=none (every layer is new then; a one-line note says so).")
    momentum: float = _opt(0.9, "SGD momentum.")
    nesterov: bool = _opt(True, "Nesterov momentum (wsolevaluation and F-CAM train with it); needs momentum > 0.")
    weight_decay: float = _opt(1e-4, "SGD weight decay.")
    lr_schedule: str = _opt("step", "Learning-rate schedule, set at every optimizer step. 'step': x lr_decay_factor "
                            "at the start of epochs lr_decay_epochs, 2 x lr_decay_epochs, ... (1-based), as "
                            "wsolevaluation does: with 15, epochs 1-14 use lr, 15-29 lr x 0.1, so one epoch earlier "
                            "than a StepLR stepped after each epoch. 'cosine': per step from lr to 0 over the run "
                            "(after the warmup); extending a resumed cosine run's epochs reshapes its remaining curve.",
                            ("step", "cosine"))
    lr_decay_epochs: int = _opt(15, "Step schedule: multiply the learning rate by lr_decay_factor every this many "
                                "epochs (see lr_schedule for the timing).", check=_at_least(1))
    lr_decay_factor: float = _opt(0.1, "Step schedule factor.")
    warmup_epochs: float = _opt(0.0, "Linear warmup, per step, from lr / (warmup steps) to lr over this many epochs "
                                "(fractions allowed; 0: none). Step decays keep their epochs; cosine starts at the "
                                "warmup's end.", check=_at_least(0))
    selection: str = _opt("val", "Which epoch becomes best.pt: 'val', the best validation localization (the "
                          "protocol's rule: MaxBoxAcc on boxes, PxAP on masks), 'val_v2', the same with MaxBoxAccV2 "
                          "on boxes (finer steps on small validation splits), or 'last', the last epoch (for "
                          "from-scratch runs, whose early, barely trained epochs can localize best by chance).",
                          ("val", "val_v2", "last"))
    selection_burn_in: float = _opt(0.0, "Fraction of the first epochs that cannot become best.pt by validation "
                                    "(best.pt follows the last epoch until then); 0: every epoch can.",
                                    check=_fraction)
    seed: int = _opt(0, "Seed of every random draw (data order, augmentation, init, seeds of F-CAM).")
    amp: bool = _opt(True, "Mixed precision on CUDA (ignored on the CPU).")
    eval_batch_size: int = _opt(64, "Batch size of validation and evaluation passes.")


@dataclass
class EvalConfig:
    cam_curve_interval: float = _opt(CAM_CURVE_INTERVAL, "Threshold step of MaxBoxAcc / PxAP "
                                     f"({round(1 / CAM_CURVE_INTERVAL)} thresholds at {CAM_CURVE_INTERVAL}).")
    num_workers: int = _opt(-1, "Processes per rank scoring maps during evaluation, started once per run; "
                            "-1: this process's CPUs (affinity) divided by the ranks on the machine; "
                            "0 or 1: in the main process.")
    mask_cache: str = _opt("", "Directory caching the ground-truth masks at eval_size (mask data): decoded "
                           "once, read back while their PNGs keep their size and modification time; "
                           "'' decodes the PNGs at every evaluation.")


@dataclass
class FcamConfig:
    epochs: int = _opt(50, "Decoder training epochs.")
    batch_size: int = _opt(32, "Decoder batch size per process.")
    lr: float = _opt(0.01, "Decoder SGD learning rate (Nesterov, momentum 0.9).")
    momentum: float = _opt(0.9, "Decoder SGD momentum.")
    weight_decay: float = _opt(1e-4, "Decoder SGD weight decay.")
    alpha: float = _opt(1.0, "Weight of the partial cross-entropy on the seeds.")
    n_seeds: int = _opt(10, "Seeds sampled per image and per region (foreground, background) at each step.")
    bg_fraction: float = _opt(0.3, "n-: fraction of lowest-CAM pixels forming the background region.")
    ksz: int = _opt(3, "Each seed is dilated by a ksz x ksz square.")
    erode_size: int = _opt(11, "Erosion kernel of the Otsu foreground region.")
    seed_color_ratio: float = _opt(0.0, "Colour filter of the foreground seed region: keep only its pixels whose "
                                   "colour is more than this many times as frequent there as in the image's "
                                   "background region (0: no filter, the paper's seeds; docs/recipe.md §9).")
    seed_color_bits: int = _opt(3, "Bits per RGB channel of the colour filter's per-image histograms.")
    crf_weight: float = _opt(2e-9, "lambda of the dense CRF loss (0 disables it).")
    crf_reference_size: int = _opt(224, "Image side at which crf_weight and crf_sigma_xy hold (the paper's values "
                                   "were set at 224): at a side L the CRF uses sigma_xy * L / 224 and weight * "
                                   "(224 / L)^4, so its strength does not change with the training size; 0 uses "
                                   "them as given at any size.")
    crf_sigma_rgb: float = _opt(15.0, "CRF colour bandwidth.")
    crf_sigma_xy: float = _opt(100.0, "CRF spatial bandwidth (pixels).")
    crf_scale: float = _opt(1.0, "CRF resolution scale factor.")
    crf_backend: str = _opt("permutohedral", "CRF filtering: 'permutohedral' (the paper's) or 'exact' (tiled).",
                            ("permutohedral", "exact"))
    size_weight: float = _opt(0.1, "Weight of the absolute size constraint (0 disables it).")
    elb_t_init: float = _opt(1.0, "Initial t of the extended log-barrier.")
    elb_t_mult: float = _opt(1.01, "t is multiplied by this after each epoch.")
    elb_t_max: float = _opt(10.0, "Cap of t.")
    selection: str = _opt("val", "Which decoder epoch becomes best.pt: 'val', the best validation localization (the "
                          "paper's rule: MaxBoxAcc on boxes, PxAP on masks), 'val_v2', the same with MaxBoxAccV2 on "
                          "boxes (mean over IoU 30/50/70: finer steps, less noise on small validation splits), or "
                          "'last', the last epoch (docs/recipe.md §7).", ("val", "val_v2", "last"))
    selection_burn_in: float = _opt(0.0, "Fraction of the first decoder epochs that cannot become best.pt by "
                                    "validation (best.pt follows the last epoch until then; with 10 epochs, 0.5 "
                                    "selects among epochs 6-10); 0: every epoch can, the paper's rule.",
                                    check=_fraction)


@dataclass
class LogConfig:
    every_n_steps: int = _opt(50, "Write one row of steps.jsonl (loss terms, learning rates, images/s) every this "
                              "many training steps; 0 writes none.")
    tensorboard: bool = _opt(False, "Also write TensorBoard event files to RUN_DIR/tensorboard (needs "
                             "`pip install fcam[tensorboard]`).")
    tensorboard_images: int = _opt(4, "Validation images whose CAM (or F-CAM) map is drawn in TensorBoard each epoch.")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    fcam: FcamConfig = field(default_factory=FcamConfig)
    log: LogConfig = field(default_factory=LogConfig)
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu' or 'cuda'.", ("auto", "cpu", "cuda"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, kind: type, key: str, source: str) -> Any:
    """Check one value against its field type; ints are accepted where floats are expected."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        if isinstance(value, str):
            # YAML 1.1 reads exponents without a dot (6e-9, 1e5) as strings.
            value = _float_or_str(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        value = str(value) if ok else value
    else:
        raise TypeError(f"unsupported config field type {kind}")
    if not ok:
        raise FcamError(f"{source}: config key '{key}' expects {kind.__name__}, got {value!r}")
    return value


def _float_or_str(text: str) -> float | str:
    """``text`` as a float when it spells a decimal number (``6e-9``), else unchanged."""
    return float(text) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text.strip()) else text


def _fill(obj: Any, values: dict, prefix: str, source: str) -> None:
    """Set the fields of dataclass ``obj`` from a nested dict, recursing into sections."""
    if not isinstance(values, dict):
        raise FcamError(f"{source}: config key '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise FcamError(f"{source}: unknown config key '{key}'; valid keys here: {', '.join(fields)}")
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            _fill(getattr(obj, name), value, f"{key}.", source)
            continue
        value = _coerce(value, kind, key, source)
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise FcamError(f"{source}: config key '{key}' must be one of {', '.join(choices)}; got {value!r}")
        check = fields[name].metadata.get("check")
        if check is not None and (problem := check(value)):
            raise FcamError(f"{source}: config key '{key}' {problem}")
        setattr(obj, name, value)


def parse_overrides(items: list[str]) -> dict:
    """Turn ``['train.lr=0.1', 'model.backbone=vgg16']`` into a nested dict (values parsed as YAML)."""
    nested: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FcamError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FcamError(f"--set: '{key}' conflicts with another override")
        node[leaf] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: Config | None = None) -> Config:
    """Build a :class:`Config` from ``base`` (or the defaults), then a YAML file, then ``--set`` overrides."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FcamError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise FcamError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        _fill(cfg, values, "", str(path))
    if overrides:
        _fill(cfg, parse_overrides(overrides), "", "--set")
    return cfg


def config_from_dict(values: dict, source: str = "checkpoint") -> Config:
    """Rebuild a :class:`Config` saved with :meth:`Config.to_dict` (e.g. inside a checkpoint)."""
    cfg = Config()
    _fill(cfg, values, "", source)
    return cfg


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """``{'train': {'lr': 0.1}}`` -> ``{'train.lr': 0.1}``."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    """True when ``key`` is one of ``prefixes`` or inside one of these sections."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class CommandKeys:
    """What a training command reads of the config (the keys it ignores, its epochs key) and the
    kind of checkpoint it writes."""

    name: str
    kind: str                          # the kind of checkpoint it writes
    epochs: str                        # the command's number of epochs
    ignored: tuple[str, ...]           # sections or keys it never reads ...
    reads_anyway: tuple[str, ...] = ()  # ... except these

    def ignores(self, key: str) -> bool:
        return _under(key, self.ignored) and not _under(key, self.reads_anyway)

    def instead(self, key: str) -> str:
        """What the command reads in place of the ignored ``key``: the same name in the other section."""
        section, _, name = key.partition(".")
        other = {"train": "fcam", "fcam": "train"}.get(section)
        if other and name and f"{other}.{name}" in flatten(Config().to_dict()):
            return f"it reads {other}.{name}"
        return f"it reads no {section}.* key" + (f" but {', '.join(self.reads_anyway)}" if self.reads_anyway else "")


TRAIN_CLS = CommandKeys("fcam-train-cls", "classifier", "train.epochs", ignored=("fcam",))
TRAIN_DECODER = CommandKeys("fcam-train-decoder", "fcam", "fcam.epochs", ignored=("train",),
                            reads_anyway=("train.seed", "train.amp", "train.eval_batch_size"))

# Keys a resumed run may change besides its epochs: they do not alter what is computed.
RESUME_SAFE = ("data.num_workers", "eval.mask_cache", "log")


def value_of(cfg: Config, key: str) -> Any:
    """The value of a dotted key, e.g. ``value_of(cfg, 'fcam.epochs')``."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def ignored_overrides(overrides: list[str], command: CommandKeys) -> list[str]:
    """One warning per ``--set`` key that ``command`` does not read, naming what it reads instead."""
    keys = flatten(parse_overrides(overrides))
    return [f"--set {key} is ignored by {command.name}: {command.instead(key)}"
            for key in keys if command.ignores(key)]


def check_resume(saved: dict, cfg: Config, command: CommandKeys, source: str) -> None:
    """Refuse to resume a run whose saved config (``saved``, from ``source``) differs from ``cfg``
    in a key that changes what the run computes; the command's epochs, ``RESUME_SAFE`` keys and
    keys the command ignores may change."""
    old = flatten(config_from_dict(saved, source).to_dict())
    new = flatten(cfg.to_dict())
    changed = [key for key in new if old[key] != new[key]
               and not _under(key, (command.epochs, *RESUME_SAFE)) and not command.ignores(key)]
    if changed:
        diffs = ", ".join(f"{key}: {old[key]!r} -> {new[key]!r}" for key in changed)
        raise FcamError(f"--resume: the config differs from the one saved in {source} ({diffs}); resume "
                        f"with the saved config ({command.epochs}, {', '.join(RESUME_SAFE)}.* may change) "
                        f"or start a new run with --overwrite")


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """Rows ``(key, default, meaning)`` of every config key, for the README's reference table."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            rows += describe(kind, f"{prefix}{f.name}.")
            continue
        text = f.metadata["help"]
        if f.metadata.get("choices"):
            text += f" One of: {', '.join(f.metadata['choices'])}."
        rows.append((f"{prefix}{f.name}", repr(f.default) if isinstance(f.default, str) else str(f.default), text))
    return rows


def markdown_table() -> str:
    """The config reference as a Markdown table (the README embeds this text verbatim)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | `{d}` | {m} |" for k, d, m in describe()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
