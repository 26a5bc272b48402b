"""torchvision classification models as WSOL trunks (``model.backbone: torchvision/<name>``):
the picked features, weight files, learning-rate groups, CAMs, and both training commands plus
fcam-eval on the synthetic data (ImageNet weights through the hub: tests/test_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml
from torch import nn

from fcam.cams import compute_cams
from fcam.cli.eval import main as eval_main
from fcam.cli.train_cls import main as train_cls
from fcam.cli.train_decoder import main as train_decoder
from fcam.errors import FcamError
from fcam.models import build_classifier, build_fcam
from fcam.models.feature_taps import find_taps

from conftest import tiny_config


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return build_classifier("torchvision/resnet18", 4).eval()


@pytest.fixture(scope="module")
def mobilenet_state() -> dict[str, torch.Tensor]:
    """A torchvision-format state dict of the whole mobilenet_v3_small (random init)."""
    torch.manual_seed(1)
    return torchvision.models.mobilenet_v3_small().state_dict()


def test_resnet_trunk_taps_stage_outputs_and_computes_torchvision_features(resnet18) -> None:
    encoder = resnet18.encoder
    assert encoder.feature_names == ("relu", "layer1", "layer2", "layer3", "layer4")
    assert encoder.strides == (2, 4, 8, 16, 32) and encoder.out_channels == (64, 64, 128, 256, 512)
    assert resnet18.summary == ("backbone torchvision/resnet18: decoder skips relu@2 (64 ch), layer1@4 (64 ch), "
                                "layer2@8 (128 ch), layer3@16 (256 ch); top map layer4@32 (512 ch)")
    reference = torchvision.models.resnet18().eval()
    trunk = {k.removeprefix("body."): v for k, v in encoder.state_dict().items()}
    assert set(reference.state_dict()) - set(trunk) == {"fc.weight", "fc.bias"}
    reference.load_state_dict(trunk, strict=False)

    x = torch.randn(2, 3, 64, 64)
    captured = []
    handle = resnet18.cam_target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        features, logits = resnet18.forward_features(x)
        expected_top = nn.Sequential(*list(reference.children())[:-2])(x)
    handle.remove()
    assert [tuple(f.shape[1:]) for f in features] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    torch.testing.assert_close(features[-1], expected_top)
    assert len(captured) == 1 and torch.equal(captured[0], features[-1])
    torch.testing.assert_close(logits, resnet18.fc(expected_top.mean(dim=(2, 3))))


def test_x10_group_is_the_new_head_only(resnet18) -> None:
    base, mult = resnet18.parameter_groups()
    assert {id(p) for p in mult} == {id(resnet18.fc.weight), id(resnet18.fc.bias)}
    assert len(base) == len(list(resnet18.encoder.parameters()))


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_gradient_cams_hook_the_top_map(resnet18, method: str) -> None:
    x = torch.randn(3, 3, 64, 64)
    targets = torch.tensor([0, 2, 3])
    maps = compute_cams(resnet18, x, targets, method, resnet18.cam_target_layer)
    # The same maps from the top map's gradient taken by hand.
    top = resnet18.forward_features(x)[0][-1].detach().requires_grad_()
    logits = resnet18.fc(top.mean(dim=(2, 3)))
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), top)
    weights = grads.mean(dim=(2, 3), keepdim=True) if method == "gradcam" else F.relu(grads)
    expected = F.relu((weights * top).sum(dim=1))
    flat = expected.flatten(1)
    low, high = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    expected = ((flat - low) / (high - low)).view_as(expected)
    assert maps.shape == (3, 2, 2)
    torch.testing.assert_close(maps, expected)


class TinyNet(nn.Module):
    """stem (stride 2), two stages that expand with a 1x1 conv then stride 2, a 7x7 adaptive pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, stride=2, padding=1))
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 1), nn.Conv2d(32, 32, 3, stride=2, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.fc = nn.Linear(32 * 49, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stage2(self.stage1(self.stem(x)))).flatten(1))


class PooledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def test_taps_are_stage_outputs_before_a_fixed_size_pool() -> None:
    taps = find_taps(TinyNet())
    # Not stage1.0 (the expansion conv, still at stride 2) nor the 7x7 pooled map.
    assert taps.nodes == ("stem", "stage1", "stage2")
    assert taps.strides == (2, 4, 8) and taps.channels == (8, 16, 32)
    with pytest.raises(ValueError, match="no \\(B, C, h, w\\) feature map"):
        find_taps(PooledNet())


def test_unknown_model_and_unsupported_output_stride_are_user_errors() -> None:
    with pytest.raises(FcamError) as info:
        build_classifier("torchvision/resnet343", 3)
    assert "list_models(module=torchvision.models)" in str(info.value)
    assert "did you mean torchvision/resnet34" in str(info.value)
    for backbone, stride in (("torchvision/resnet18", 8), ("torchvision/mobilenet_v3_small", 16)):
        with pytest.raises(FcamError, match="replace_stride_with_dilation"):
            build_classifier(backbone, 3, output_stride=stride)
    with pytest.raises(FcamError, match="output stride 8"):
        build_classifier("resnet18", 3, output_stride=16)
    with pytest.raises(FcamError, match="must be one of 0, 8, 16"):
        build_classifier("torchvision/resnet50", 3, output_stride=4)


def test_output_stride_dilates_resnet50() -> None:
    classifier = build_classifier("torchvision/resnet50", 3, output_stride=8).eval()
    assert classifier.encoder.strides == (2, 4, 8)
    assert classifier.encoder.feature_names == ("relu", "layer1", "layer4")
    assert classifier.encoder.decoder_channels == (64, 32, 16)
    with torch.no_grad():
        out = build_fcam(classifier)(torch.randn(1, 3, 64, 64))
    assert out["features"][-1].shape == (1, 2048, 8, 8) and out["seg_logits"].shape == (1, 2, 64, 64)


def test_torchvision_state_dict_file_loads_into_the_trunk(mobilenet_state, tmp_path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(mobilenet_state, path)
    trunk = build_classifier("torchvision/mobilenet_v3_small", 5, pretrained=str(path)).encoder.state_dict()
    assert trunk and all(torch.equal(v, mobilenet_state[k.removeprefix("body.")]) for k, v in trunk.items())
    assert not any(k.startswith("body.classifier") for k in trunk)

    other = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    with pytest.raises(FcamError) as info:
        build_classifier("torchvision/mobilenet_v3_small", 5, pretrained=str(other))
    assert str(other) in str(info.value) and "missing keys" in str(info.value)


# Three trunks outside the WSOL backbones, and the skips they are expected to tap.
RUNS = {
    "mobilenet_v3_small": "features.0@2 (16 ch), features.1@4 (16 ch), features.3@8 (24 ch), features.8@16 (48 ch); "
                          "top map features@32 (576 ch)",
    "squeezenet1_1": "features.1@2 (64 ch), features.4@4 (128 ch), features.7@8 (256 ch); "
                     "top map classifier.2@16 (1000 ch)",
    "efficientnet_b0": "features.1@2 (16 ch), features.2@4 (24 ch), features.3@8 (40 ch), features.5@16 (112 ch); "
                       "top map features@32 (1280 ch)",
}


@pytest.mark.parametrize("name", list(RUNS))
def test_trains_both_stages_and_evaluates(name: str, synth_root: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    # 64 px: a top map of 2x2 at stride 32, so that CAMs are not constant.
    data = {"resize_size": 72, "crop_size": 64, "eval_size": 64}
    cfg.write_text(yaml.safe_dump(tiny_config(synth_root, data=data, model={"backbone": f"torchvision/{name}"},
                                              train={"epochs": 1}, fcam={"epochs": 1})))
    cls_run, fcam_run = tmp_path / "cls", tmp_path / "fcam"
    assert train_cls(["--config", str(cfg), "--output", str(cls_run)]) == 0
    assert f"backbone torchvision/{name}: decoder skips {RUNS[name]}" in capsys.readouterr().out
    assert train_decoder(["--config", str(cfg), "--classifier", str(cls_run / "best.pt"),
                          "--output", str(fcam_run)]) == 0

    # The checkpoints rebuild the trained models from their config: scoring them again on
    # the val split gives the numbers of their last validation.
    methods = ["cam", "fcam"] if name == "mobilenet_v3_small" else ["fcam"]
    checkpoints = ["--checkpoint", str(cls_run / "best.pt")] if "cam" in methods else []
    out = tmp_path / "eval"
    assert eval_main([*checkpoints, "--decoder", str(fcam_run / "best.pt"), "--method", *methods,
                      "--split", "val", "--output", str(out)]) == 0
    for method, run in (("cam", cls_run), ("fcam", fcam_run)):
        if method in methods:
            metrics = json.loads((out / method / "metrics.json" if len(methods) > 1 else out / "metrics.json")
                                 .read_text())
            logged = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
            keys = ("MaxBoxAcc", "MaxBoxAccV2", "top1_loc", "cls_acc")
            assert {k: metrics[k] for k in keys} == {k: logged[f"val_{k}"] for k in keys}, method
