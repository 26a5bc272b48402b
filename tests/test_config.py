"""Typed config: YAML + dotted overrides, errors naming the key, the generated reference table."""

from pathlib import Path

import pytest

from fcam.config import Config, config_from_dict, describe, load_config, markdown_table, parse_overrides
from fcam.errors import FcamError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.5\n  epochs: 3\nmodel:\n  backbone: vgg16\n")
    cfg = load_config(path, ["train.lr=0.01", "data.crop_size=64"])
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.model.backbone == "vgg16" and cfg.data.crop_size == 64
    assert cfg.data.resize_size == 256  # untouched default


def test_int_accepted_for_float_but_not_the_reverse(tmp_path):
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    assert isinstance(load_config(None, ["train.lr=1"]).train.lr, float)
    with pytest.raises(FcamError, match="'train.epochs' expects int"):
        load_config(None, ["train.epochs=2.5"])


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 6e-9 as a string; a float key takes it as the number it spells.
    assert load_config(None, ["fcam.crf_weight=6e-9"]).fcam.crf_weight == 6e-9
    assert load_config(write(tmp_path, "train:\n  lr: 1E-2\n")).train.lr == 0.01
    with pytest.raises(FcamError, match="'train.lr' expects float, got '6e-9x'"):
        load_config(None, ["train.lr=6e-9x"])


@pytest.mark.parametrize("text, match", [
    ("train:\n  lrr: 0.1\n", "unknown config key 'train.lrr'"),
    ("bogus: 1\n", "unknown config key 'bogus'"),
    ("train:\n  amp: yes please\n", "'train.amp' expects bool"),
    ("model:\n  backbone: resnet51\n", "'model.backbone' must be one of"),
    ("train: 3\n", "'train' must be a mapping"),
])
def test_bad_file_names_key_and_file(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(FcamError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(FcamError, match="KEY=VALUE"):
        parse_overrides(["train.lr"])
    with pytest.raises(FcamError, match="unknown config key 'train.nope'"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(FcamError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_dict_and_base():
    cfg = load_config(None, ["fcam.bg_fraction=0.6", "cam.method=layercam"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    derived = load_config(None, ["train.epochs=7"], base=cfg)
    assert derived.fcam.bg_fraction == 0.6 and derived.train.epochs == 7
    assert cfg.train.epochs == Config().train.epochs  # base not mutated


def test_every_shipped_config_loads():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "configs/ is empty"
    for path in files:
        load_config(path)


def test_reference_table_covers_every_key_and_is_in_readme():
    keys = {row[0] for row in describe()}
    assert {"data.dataset", "data.eval_size", "model.pretrained", "cam.method", "train.seed", "device",
            "fcam.crf_weight", "fcam.bg_fraction"} <= keys
    assert markdown_table() in (ROOT / "README.md").read_text(), \
        "README's config table is stale: paste the output of `python -m fcam.config`"


def test_resume_check_names_changed_keys_and_lets_safe_ones_change():
    from fcam.config import TRAIN_CLS, TRAIN_DECODER, check_resume

    saved = Config().to_dict()
    check_resume(saved, load_config(None, ["train.epochs=80", "data.num_workers=0", "log.tensorboard=true"]),
                 TRAIN_CLS, "last.pt")
    with pytest.raises(FcamError, match=r"last.pt \(model.backbone: 'resnet50' -> 'vgg16', train.lr: 0.0017 -> "
                                        r"0.01\)"):
        check_resume(saved, load_config(None, ["train.lr=0.01", "model.backbone=vgg16"]), TRAIN_CLS, "last.pt")
    # The decoder reads fcam.epochs, not train.epochs; train.lr does not concern it, train.seed does.
    check_resume(saved, load_config(None, ["fcam.epochs=9", "train.lr=0.5"]), TRAIN_DECODER, "last.pt")
    check_resume(saved, load_config(None, ["fcam.lr=0.5"]), TRAIN_CLS, "last.pt")
    with pytest.raises(FcamError, match="fcam.lr: 0.01 -> 0.5"):
        check_resume(saved, load_config(None, ["fcam.lr=0.5"]), TRAIN_DECODER, "last.pt")
    with pytest.raises(FcamError, match="train.seed: 0 -> 4"):
        check_resume(saved, load_config(None, ["train.seed=4"]), TRAIN_DECODER, "last.pt")


def test_ignored_overrides_name_what_the_command_reads():
    from fcam.config import TRAIN_CLS, TRAIN_DECODER, ignored_overrides

    assert ignored_overrides(["train.epochs=3", "train.seed=2", "fcam.lr=0.1"], TRAIN_DECODER) == [
        "--set train.epochs is ignored by fcam-train-decoder: it reads fcam.epochs"]
    assert ignored_overrides(["fcam.batch_size=4", "fcam.alpha=2", "train.lr=1"], TRAIN_CLS) == [
        "--set fcam.batch_size is ignored by fcam-train-cls: it reads train.batch_size",
        "--set fcam.alpha is ignored by fcam-train-cls: it reads no fcam.* key"]


def test_protocol_configs_set_the_wsolevaluation_optimizer_explicitly():
    import yaml

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name == "synth.yaml":
            continue
        train = yaml.safe_load(path.read_text())["train"]
        assert (train["nesterov"], train["lr_schedule"], train["warmup_epochs"]) == (True, "step", 0), path.name
    defaults = Config().train
    assert (defaults.nesterov, defaults.lr_schedule, defaults.warmup_epochs) == (True, "step", 0.0)
    assert load_config(None, ["train.warmup_epochs=0.5"]).train.warmup_epochs == 0.5


@pytest.mark.parametrize("override, match", [
    ("train.lr_schedule=linear", "'train.lr_schedule' must be one of step, cosine"),
    ("train.warmup_epochs=-1", "'train.warmup_epochs' must be >= 0"),
    ("train.lr_decay_epochs=0", "'train.lr_decay_epochs' must be >= 1"),
    ("train.nesterov=1", "'train.nesterov' expects bool"),
])
def test_schedule_keys_are_checked(override, match):
    with pytest.raises(FcamError, match=match):
        load_config(None, [override])
