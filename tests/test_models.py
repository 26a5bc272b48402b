"""Tests for fcam.models: WSOL backbones, classifier, decoder, F-CAM model and weight loading."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from fcam.config import load_config, markdown_table as config_table
from fcam.errors import FcamError
from fcam.models import BACKBONES, FCAMModel, WSOLClassifier, build_classifier, build_decoder, build_fcam
from fcam.models.registry import BackboneSpec, markdown_table

ROOT = Path(__file__).resolve().parents[1]
# Top-map channels and decoder sizes stated in the paper (F-CAM, Belharbi et al.) and Choe et al.
TOP_CHANNELS = {"resnet50": 2048, "vgg16": 1024, "inceptionv3": 1024, "resnet18": 512}
DECODER_MILLIONS = {"resnet50": 9.0, "inceptionv3": 5.7, "vgg16": 23.1}
# Layers that ImageNet checkpoints lack, besides fc.
NEW_LAYERS = {"resnet50": (), "resnet18": (), "vgg16": ("conv6",), "inceptionv3": ("SPG_A3_1b", "SPG_A3_2b")}
# wsolevaluation's main.py (Trainer._FEATURE_PARAM_LAYER_PATTERNS and _set_optimizer): a
# substring test on parameter names; ResNet's patterns select the x10 group, VGG's and
# InceptionV3's select the base group.
X10_PATTERNS = {"resnet": ("layer4.", "fc.")}
BASE_PATTERNS = {"vgg": ("features.",), "inception": ("Mixed", "Conv2d_1", "Conv2d_2", "Conv2d_3", "Conv2d_4")}


def in_wsolevaluation_x10_group(backbone: str, name: str) -> bool:
    for family, patterns in X10_PATTERNS.items():
        if backbone.startswith(family):
            return any(p in name for p in patterns)
    for family, patterns in BASE_PATTERNS.items():
        if backbone.startswith(family):
            return not any(p in name for p in patterns)
    raise KeyError(backbone)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def classifiers() -> dict[str, WSOLClassifier]:
    """One randomly initialized 5-class classifier per backbone, in eval mode; copy before changing."""
    torch.manual_seed(0)
    return {backbone: build_classifier(backbone, 5).eval() for backbone in BACKBONES}


def test_unknown_backbone_lists_the_supported_ones() -> None:
    with pytest.raises(FcamError) as info:
        build_classifier("resnet101", 10)
    for name in BACKBONES:
        assert name in str(info.value)
    assert "torchvision/resnet101" in str(info.value)


def test_backbones_is_one_dict_that_config_and_readme_derive_from() -> None:
    assert isinstance(BACKBONES, dict) and list(BACKBONES) == ["resnet50", "vgg16", "inceptionv3", "resnet18"]
    assert all(isinstance(spec, BackboneSpec) for spec in BACKBONES.values())
    for name in [*BACKBONES, "torchvision/resnet34"]:
        assert load_config(None, [f"model.backbone={name}"]).model.backbone == name
    for bad in ("resnet34", "torchvision/", "timm/resnet18"):
        with pytest.raises(FcamError, match="'model.backbone' must be one of") as info:
            load_config(None, [f"model.backbone={bad}"])
        assert all(name in str(info.value) for name in BACKBONES)
    backbone_row = next(line for line in config_table().splitlines() if line.startswith("| `model.backbone`"))
    assert all(name in backbone_row for name in BACKBONES)
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's backbone table is stale: paste `python -m fcam.models.registry`"
    assert all(f"| `{name}` |" in markdown_table() for name in BACKBONES)


def test_registry_and_config_import_without_torch() -> None:
    # (The heavy names stay importable from fcam.models: the imports at the top of this file.)
    code = ("import sys, fcam.models.registry, fcam.config, fcam.models; "
            "heavy = {'torch', 'torchvision'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_top_map_is_28x28_at_224(backbone: str, classifiers: dict[str, WSOLClassifier]) -> None:
    classifier = classifiers[backbone]
    captured = []
    handle = classifier.cam_target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        features, logits = classifier.forward_features(torch.randn(1, 3, 224, 224))
    handle.remove()
    spec = BACKBONES[backbone]
    assert spec.top_channels == TOP_CHANNELS[backbone] and spec.top_stride == 8
    assert features[-1].shape == (1, TOP_CHANNELS[backbone], 28, 28)
    assert logits.shape == (1, 5)
    assert tuple(f.shape[1] for f in features) == classifier.encoder_channels
    assert [f.shape[-1] for f in features] == sorted((f.shape[-1] for f in features), reverse=True)
    assert len(captured) == 1 and torch.equal(captured[0], features[-1])


def test_resnet18_features_at_64() -> None:
    classifier = build_classifier("resnet18", 3).eval()
    with torch.no_grad():
        features, logits = classifier.forward_features(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 8, 8), (512, 8, 8)
    ]
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_forward_features_logits_equal_forward(backbone: str, classifiers: dict[str, WSOLClassifier]) -> None:
    classifier = classifiers[backbone]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, logits = classifier.forward_features(x)
        assert torch.equal(logits, classifier(x))
    # The head is GAP then fc: check against the top map directly.
    with torch.no_grad():
        top = classifier.encoder(x)[-1]
    torch.testing.assert_close(logits, top.mean(dim=(2, 3)) @ classifier.fc.weight.T + classifier.fc.bias)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_parameter_groups_follow_wsolevaluation(backbone: str, classifiers: dict[str, WSOLClassifier]) -> None:
    classifier = copy.deepcopy(classifiers[backbone])
    base, mult = classifier.parameter_groups()
    ids_base, ids_mult = {id(p) for p in base}, {id(p) for p in mult}
    assert not ids_base & ids_mult
    assert ids_base | ids_mult == {id(p) for p in classifier.parameters()}
    names = {id(p): n for n, p in classifier.named_parameters()}
    assert {names[i] for i in ids_mult} == {n for n in names.values() if in_wsolevaluation_x10_group(backbone, n)}
    # The README's table says which layers get x10.
    assert all(layer in BACKBONES[backbone].summary for layer in classifier.encoder.lr_mult_layers)

    classifier.encoder.requires_grad_(False)
    base, mult = classifier.parameter_groups()
    assert base == [] and {id(p) for p in mult} == {id(classifier.fc.weight), id(classifier.fc.bias)}


def test_resnet_layer4_gets_x10_but_loads_from_imagenet(classifiers: dict[str, WSOLClassifier]) -> None:
    encoder = classifiers["resnet50"].encoder
    assert encoder.is_lr_mult_parameter("layer4.0.conv1.weight")
    assert not encoder.is_new_parameter("layer4.0.conv1.weight")
    _, mult = classifiers["resnet50"].parameter_groups()
    layer4 = [p for n, p in classifiers["resnet50"].named_parameters() if n.startswith("encoder.layer4.")]
    assert len(mult) == len(layer4) + 2


def test_inceptionv3_dropout_in_train_mode_only(classifiers: dict[str, WSOLClassifier]) -> None:
    classifier = copy.deepcopy(classifiers["inceptionv3"])
    no_dropout = copy.deepcopy(classifier)
    no_dropout.encoder.dropout = no_dropout.encoder.head_dropout = 0.0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classifier.eval()
        no_dropout.eval()
        features, logits = classifier.forward_features(x)
        assert torch.equal(logits, classifier(x)) and torch.equal(logits, no_dropout(x))
        assert torch.equal(features[-1], no_dropout.forward_features(x)[0][-1])

        classifier.train()
        no_dropout.train()
        assert torch.equal(no_dropout(x), no_dropout(x))  # without dropout, train mode is deterministic
        captured = []
        handle = classifier.cam_target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
        features, logits = classifier.forward_features(x)
        handle.remove()
        assert not torch.equal(logits, classifier(x))
        # Dropped out on the way to the head only: the returned top map is the target layer's output.
        assert torch.equal(captured[0], features[-1])
        assert not torch.allclose(logits, classifier.fc(features[-1].mean(dim=(2, 3))))


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_fcam_output_matches_odd_input_size(backbone: str, classifiers: dict[str, WSOLClassifier]) -> None:
    model = build_fcam(copy.deepcopy(classifiers[backbone])).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 41, 53))
    assert out["seg_logits"].shape == (1, 2, 41, 53)
    assert out["logits"].shape == (1, 5)
    assert len(out["features"]) == len(model.classifier.encoder_channels)


@pytest.mark.parametrize("backbone", sorted(DECODER_MILLIONS))
def test_decoder_size_matches_spec(backbone: str, classifiers: dict[str, WSOLClassifier]) -> None:
    decoder = build_decoder(classifiers[backbone])
    millions = sum(p.numel() for p in decoder.parameters()) / 1e6
    assert millions == pytest.approx(DECODER_MILLIONS[backbone], abs=0.05)


def test_fcam_training_step_changes_only_the_decoder() -> None:
    model = build_fcam(build_classifier("resnet18", 3))
    assert isinstance(model, FCAMModel)
    model.train()
    assert model.decoder.training
    assert not any(m.training for m in model.classifier.modules())
    assert not any(p.requires_grad for p in model.classifier.parameters())

    classifier_before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(torch.randn(2, 3, 32, 32))
    target = torch.randint(0, 2, (2, 32, 32))
    torch.nn.functional.cross_entropy(out["seg_logits"], target).backward()
    optimizer.step()

    assert all(p.grad is None for p in model.classifier.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    for key, value in model.classifier.state_dict().items():
        assert torch.equal(value, classifier_before[key]), key
    changed = [k for k, v in model.decoder.state_dict().items() if not torch.equal(v, decoder_before[k])]
    assert any(k.endswith("running_mean") for k in changed)
    assert any(k.endswith("weight") for k in changed)


# backbone -> (its whole torchvision network, its ImageNet weights, prefix of the trunk's keys)
IMAGENET = {
    "resnet18": ("resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1, ""),
    "torchvision/mobilenet_v3_small": ("mobilenet_v3_small", torchvision.models.MobileNet_V3_Small_Weights.DEFAULT,
                                       "body."),
}


@pytest.mark.parametrize("backbone", list(IMAGENET))
def test_imagenet_without_network_says_where_to_put_the_file(backbone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FcamError) as info:
        build_classifier(backbone, 3, pretrained="imagenet")
    message = str(info.value)
    filename = os.path.basename(IMAGENET[backbone][1].url)
    assert os.path.join(torch.hub.get_dir(), "checkpoints", filename) in message
    assert "network unreachable" in message


@pytest.mark.parametrize("backbone", list(IMAGENET))
def test_imagenet_weights_come_from_the_hub_loader(backbone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net, weights, prefix = IMAGENET[backbone]
    reference = torchvision.models.get_model(net).state_dict()
    urls = []

    def cached(url: str, **kwargs: object) -> dict[str, torch.Tensor]:
        urls.append(url)
        return reference

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", cached)
    encoder_state = build_classifier(backbone, 3, pretrained="imagenet").encoder.state_dict()
    assert urls == [weights.url]
    head = {"fc.weight", "fc.bias"} if net == "resnet18" else {k for k in reference if k.startswith("classifier.")}
    assert {k.removeprefix(prefix) for k in encoder_state} == set(reference) - head
    for key, value in encoder_state.items():
        assert torch.equal(value, reference[key.removeprefix(prefix)]), key


TORCHVISION_NETS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "inceptionv3": lambda: torchvision.models.inception_v3(weights=None, init_weights=False),
}


@pytest.mark.parametrize("backbone", sorted(TORCHVISION_NETS))
def test_torchvision_format_file_loads_into_the_trunk(backbone: str, tmp_path) -> None:
    reference = TORCHVISION_NETS[backbone]().state_dict()
    path = tmp_path / "imagenet.pth"
    torch.save(reference, path)
    encoder_state = build_classifier(backbone, 6, pretrained=str(path)).encoder.state_dict()
    pretrained_keys = [k for k in encoder_state if k.split(".")[0] not in NEW_LAYERS[backbone]]
    assert len(pretrained_keys) > len(encoder_state) - 5
    for key in pretrained_keys:
        assert torch.equal(encoder_state[key], reference[key]), key


def test_full_classifier_state_round_trips(tmp_path) -> None:
    original = build_classifier("resnet18", 4)
    path = tmp_path / "classifier.pth"
    torch.save(original.state_dict(), path)
    restored = build_classifier("resnet18", 4, pretrained=path)
    for key, value in original.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key

    with pytest.raises(FcamError) as info:
        build_classifier("resnet18", 5, pretrained=path)
    assert str(path) in str(info.value) and "fc.weight" in str(info.value)


def test_checkpoint_of_another_backbone_is_rejected(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(FcamError) as info:
        build_classifier("resnet50", 3, pretrained=str(path))
    message = str(info.value)
    assert str(path) in message
    assert "layer1.0.conv3.weight" in message  # a Bottleneck conv a BasicBlock net lacks
    assert "shape mismatches" in message


def test_missing_or_unreadable_weights_file(tmp_path) -> None:
    with pytest.raises(FcamError, match="not found"):
        build_classifier("resnet18", 3, pretrained=str(tmp_path / "absent.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FcamError, match="garbage.pth"):
        build_classifier("resnet18", 3, pretrained=str(garbage))
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(FcamError, match="state dict"):
        build_classifier("resnet18", 3, pretrained=str(not_a_state_dict))
