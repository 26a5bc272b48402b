"""fcam.cams: the formulas against hand-computed maps, Score-CAM against the authors' loop, token models,
batching, side effects on the model, and the one registry of methods."""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

from fcam.cams import (CAM_METHODS, GRADCAMPP_VARIANTS, CamMethod, CamOptions, CamResult, compute_cams, explain,
                       minmax_normalize, swin_reshape, vit_reshape)
from fcam.cams.registry import ONE_PASS_CAM_METHODS, cam_method
from fcam.errors import FcamError

NUM_CLASSES = 4
CHANNELS = 3


class GapLinear(nn.Module):
    """conv -> global average pooling -> linear: d logit_c / dA = W_c / (h w) everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, CHANNELS, 3, padding=1)
        self.fc = nn.Linear(CHANNELS, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class GapSquareLinear(nn.Module):
    """conv+relu -> mean of squares -> linear: d logit_c / dA = 2 W_c A / (h w), 0 where A = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, CHANNELS, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(CHANNELS, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).square().mean(dim=(2, 3)))


class SmallCnn(nn.Module):
    """A BatchNorm CNN whose target layer is followed by an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.block(self.stem(x))).mean(dim=(2, 3)))


def seeded(model: nn.Module, seed: int = 31) -> nn.Module:
    """Normal(0, 1) parameters; the default seed gives no degenerate (all-zero) expected map."""
    torch.manual_seed(seed)
    for parameter in model.parameters():
        nn.init.normal_(parameter)
    return model.eval()


def images(batch: int = 3, size: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def relu(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, 0)


def reference_normalize(maps: np.ndarray) -> np.ndarray:
    out = np.zeros_like(maps)
    for b, m in enumerate(maps):
        if not np.isnan(m).any() and m.max() > m.min():
            out[b] = (m - m.min()) / (m.max() - m.min())
    return out


def reference_gradcampp_weight(a: np.ndarray, g2: np.ndarray, g3: np.ndarray, pos: np.ndarray) -> float:
    """w_k of Grad-CAM++ for one channel, pixel by pixel."""
    total = a.sum()
    weight = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            denominator = 2 * g2[i, j] + total * g3[i, j]
            alpha = g2[i, j] / denominator if denominator != 0 else 0.0
            weight += alpha * pos[i, j]
    return weight


def reference_map(method: str, a: np.ndarray, g: np.ndarray, fc_row: np.ndarray) -> np.ndarray:
    """One image's raw map from its activations a (K,h,w) and gradients g (K,h,w)."""
    if method == "cam":
        return sum(fc_row[k] * a[k] for k in range(len(a)))
    if method == "gradcam":
        return relu(sum(g[k].mean() * a[k] for k in range(len(a))))
    if method in ("gradcampp", "smoothgradcampp"):
        weights = [reference_gradcampp_weight(a[k], g[k] ** 2, g[k] ** 3, relu(g[k])) for k in range(len(a))]
        return relu(sum(weights[k] * a[k] for k in range(len(a))))
    if method == "gradcampp-fcam-wsol":
        return relu(sum((g[k] ** 2 * relu(g[k])).sum() * a[k] for k in range(len(a))))
    if method == "xgradcam":
        weights = [(g[k] * a[k]).sum() / a[k].sum() if a[k].sum() != 0 else 0.0 for k in range(len(a))]
        return relu(sum(weights[k] * a[k] for k in range(len(a))))
    assert method == "layercam"
    return relu(sum(relu(g[k]) * a[k] for k in range(len(a))))


def reference_smooth_map(a: np.ndarray, g: np.ndarray, variant: str) -> np.ndarray:
    """One image's raw Smooth Grad-CAM++ map from its clean activations a (K,h,w) and the
    gradients g (n,K,h,w) of its n noisy copies."""
    m2, m3 = (g**2).mean(axis=0), (g**3).mean(axis=0)
    channel_weights = []
    for k in range(len(a)):
        if variant == "paper":
            channel_weights.append(reference_gradcampp_weight(a[k], m2[k], m3[k], relu(g[:, k]).mean(axis=0)))
        else:
            denominator = 2 * m2[k] + (a[k] * m3[k]).sum()
            alpha = np.divide(m2[k], denominator, out=np.zeros_like(m2[k]), where=denominator != 0)
            channel_weights.append((alpha * relu(g[-1, k])).sum())
    return relu(sum(channel_weights[k] * a[k] for k in range(len(a))))


def analytic_case(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations, exact gradients and the fc rows of the targets for the two analytic models."""
    with torch.no_grad():
        acts = model.features(x).double().numpy()
    weights = model.fc.weight.detach().double().numpy()[targets.numpy()]  # (B,K)
    area = acts.shape[2] * acts.shape[3]
    grads = np.broadcast_to(weights[:, :, None, None] / area, acts.shape).copy()
    if isinstance(model, GapSquareLinear):
        grads = 2 * acts * grads
    return acts, grads, weights


@pytest.mark.parametrize("model_class", [GapLinear, GapSquareLinear])
@pytest.mark.parametrize("method", ONE_PASS_CAM_METHODS)
def test_each_formula_matches_a_hand_computed_map(model_class: type, method: str) -> None:
    model = seeded(model_class())
    x = images()
    targets = torch.tensor([0, 3, 1])
    acts, grads, weights = analytic_case(model, x, targets)
    expected = reference_normalize(
        np.stack([reference_map(method, a, g, w) for a, g, w in zip(acts, grads, weights)])
    )

    # With no noise, every noisy copy has the clean gradients: Smooth Grad-CAM++ = Grad-CAM++.
    maps = compute_cams(model, x, targets, method, model.features, fc=model.fc, noise_std=0.0)

    assert maps.dtype == torch.float32 and maps.shape == (3, 6, 6)
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)
    assert np.ptp(expected.reshape(3, -1), axis=1).min() == 1.0, "the example must not be degenerate"


def test_gradcampp_fcam_wsol_variant_is_alpha_equal_to_squared_gradients() -> None:
    model = seeded(GapLinear())
    x = images()
    targets = torch.tensor([2, 0, 1])
    acts, grads, weights = analytic_case(model, x, targets)
    expected = reference_normalize(
        np.stack([reference_map("gradcampp-fcam-wsol", a, g, w) for a, g, w in zip(acts, grads, weights)])
    )

    fcam_wsol = compute_cams(model, x, targets, "gradcampp", model.features, gradcampp_variant="fcam-wsol")
    alias = compute_cams(model, x, targets, "gradcampp", model.features, gradcampp_variant="torchcam")
    paper = compute_cams(model, x, targets, "gradcampp", model.features)

    np.testing.assert_allclose(fcam_wsol.numpy(), expected, atol=1e-5)
    torch.testing.assert_close(alias, fcam_wsol, rtol=0, atol=0)
    assert (fcam_wsol - paper).abs().amax() > 0.05
    with pytest.raises(FcamError, match="gradcampp_variant"):
        compute_cams(model, x, targets, "gradcampp", model.features, gradcampp_variant="tochcam")


def test_smoothgradcampp_uses_clean_activations_when_gradients_do_not_depend_on_the_input() -> None:
    model = seeded(GapLinear())
    x = images()
    targets = torch.tensor([1, 1, 2])
    acts, grads, weights = analytic_case(model, x, targets)
    expected = reference_normalize(
        np.stack([reference_map("gradcampp", a, g, w) for a, g, w in zip(acts, grads, weights)])
    )

    for variant in ("paper", "fcam-wsol"):
        maps = compute_cams(
            model, x, targets, "smoothgradcampp", model.features, noise_std=1.0, gradcampp_variant=variant
        )
        np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "fcam-wsol"])
def test_smoothgradcampp_averages_the_gradients_of_the_noisy_copies(variant: str) -> None:
    model = seeded(GapSquareLinear())
    x = images(batch=2)
    targets = torch.tensor([0, 2])
    n_samples, noise_std = 3, 0.5
    noise = torch.randn((n_samples, 2, 3, 6, 6), generator=torch.Generator().manual_seed(7))
    clean_acts, _, weights = analytic_case(model, x, targets)
    noisy_grads = np.stack(
        [analytic_case(model, x + noise_std * noise[m], targets)[1] for m in range(n_samples)]
    )
    expected = [reference_smooth_map(clean_acts[b], noisy_grads[:, b], variant) for b in range(2)]

    maps = compute_cams(
        model,
        x,
        targets,
        "smoothgradcampp",
        model.features,
        n_samples=n_samples,
        noise_std=noise_std,
        gradcampp_variant=variant,
        generator=torch.Generator().manual_seed(7),
    )

    assert maps.amax(dim=(1, 2)).eq(1).all()
    np.testing.assert_allclose(maps.numpy(), reference_normalize(np.stack(expected)), atol=1e-5)


@pytest.mark.parametrize("method", [m for m in CAM_METHODS if m != "smoothgradcampp"])
def test_a_batch_gives_the_maps_of_its_images_one_by_one(method: str) -> None:
    model = seeded(SmallCnn())
    x = images(batch=4, size=8)
    targets = torch.tensor([0, 3, 3, 1])

    batched = compute_cams(model, x, targets, method, model.block, fc=model.fc)
    single = torch.cat(
        [
            compute_cams(model, x[i : i + 1], targets[i : i + 1], method, model.block, fc=model.fc)
            for i in range(4)
        ]
    )

    assert batched.amax(dim=(1, 2)).min() == 1.0
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_smoothgradcampp_map_of_an_image_does_not_depend_on_the_rest_of_its_batch() -> None:
    model = seeded(SmallCnn())
    x = images(batch=3, size=8)
    other = x.clone()
    other[1:] = images(batch=2, size=8, seed=5)
    targets = torch.tensor([2, 0, 1])

    def smooth(batch: torch.Tensor) -> torch.Tensor:
        return compute_cams(
            model, batch, targets, "smoothgradcampp", model.block, generator=torch.Generator().manual_seed(3)
        )

    first, second = smooth(x), smooth(other)

    torch.testing.assert_close(first[0], second[0], atol=1e-5, rtol=0)
    assert (first[1:] - second[1:]).abs().amax() > 0.05
    assert (smooth(x) - compute_cams(model, x, targets, "gradcampp", model.block)).abs().amax() > 0.01


def test_cam_uses_the_target_layer_output_even_if_an_inplace_op_follows() -> None:
    model = seeded(SmallCnn())
    x = images(batch=2, size=8)
    targets = torch.tensor([1, 2])
    with torch.no_grad():
        acts = model.block(model.stem(x))
    expected = minmax_normalize(torch.einsum("bk,bkhw->bhw", model.fc.weight[targets], acts))

    # Without a copy of the layer's output, the in-place ReLU would alter A (or fail on the leaf).
    assert compute_cams(model, x, targets, "gradcam", model.block).amax(dim=(1, 2)).eq(1).all()
    torch.testing.assert_close(compute_cams(model, x, targets, "cam", model.block, fc=model.fc), expected)


def all_hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


class RaisingModel(SmallCnn):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.block(self.stem(x))
        raise RuntimeError("broken head")


@pytest.mark.parametrize("method", CAM_METHODS)
def test_no_hook_is_left_after_a_call_or_an_exception(method: str) -> None:
    model = seeded(SmallCnn())
    compute_cams(model, images(size=8), None, method, model.block, fc=model.fc)
    assert all_hooks(model) == 0 and torch.is_grad_enabled()

    raising = seeded(RaisingModel())
    with pytest.raises(RuntimeError, match="broken head"):
        compute_cams(raising, images(size=8), None, method, raising.block, fc=raising.fc)
    assert all_hooks(raising) == 0

    with pytest.raises(ValueError, match="target layer"):
        compute_cams(model, images(size=8), None, method, model.fc, fc=model.fc)
    assert all_hooks(model) == 0


def test_parameter_grads_and_train_mode_are_left_untouched() -> None:
    model = seeded(SmallCnn())
    model.stem[0].weight.grad = torch.full_like(model.stem[0].weight, 0.5)
    model.fc.weight.grad = torch.full_like(model.fc.weight, -2.0)
    model.stem[1].eval()  # a mix of modes must survive as it is
    modes = [m.training for m in model.modules()]
    before = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}

    for method in CAM_METHODS:
        compute_cams(model, images(size=8), None, method, model.block, fc=model.fc)

    for name, parameter in model.named_parameters():
        if before[name] is None:
            assert parameter.grad is None, name
        else:
            torch.testing.assert_close(parameter.grad, before[name], rtol=0, atol=0)
    assert [m.training for m in model.modules()] == modes


@pytest.mark.parametrize("method", CAM_METHODS)
def test_frozen_model_under_no_grad_and_inference_mode(method: str) -> None:
    model = seeded(SmallCnn())
    x = images(size=8)
    expected = compute_cams(
        model, x, None, method, model.block, fc=model.fc, generator=torch.Generator().manual_seed(0)
    )
    model.requires_grad_(False)

    with torch.no_grad():
        frozen = compute_cams(
            model, x, None, method, model.block, fc=model.fc, generator=torch.Generator().manual_seed(0)
        )
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        inferred = compute_cams(
            model,
            x.clone(),
            None,
            method,
            model.block,
            fc=model.fc,
            generator=torch.Generator().manual_seed(0),
        )

    torch.testing.assert_close(frozen, expected)
    torch.testing.assert_close(inferred, expected)
    assert not frozen.requires_grad


def test_targets_none_means_the_predicted_class() -> None:
    model = seeded(SmallCnn(), seed=5)
    x = images(batch=5, size=8)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    assert len(set(predicted.tolist())) > 1
    for method in ("cam", "gradcam"):
        default = compute_cams(model, x, None, method, model.block, fc=model.fc)
        torch.testing.assert_close(
            default, compute_cams(model, x, predicted, method, model.block, fc=model.fc)
        )
        other = compute_cams(model, x, (predicted + 1) % NUM_CLASSES, method, model.block, fc=model.fc)
        assert (default - other).abs().amax() > 0.05


@pytest.mark.parametrize("interpolation", ["bilinear", "torch-bicubic", "bicubic"])
def test_upsampled_maps_are_normalized_after_resizing(interpolation: str) -> None:
    model = seeded(SmallCnn())
    x = images(size=8)
    low = compute_cams(model, x, None, "gradcam", model.block)

    high = compute_cams(model, x, None, "gradcam", model.block, size=(11, 16), interpolation=interpolation)

    assert low.shape == (3, 4, 4) and high.shape == (3, 11, 16)
    assert high.amin(dim=(1, 2)).eq(0).all() and high.amax(dim=(1, 2)).eq(1).all()
    if interpolation == "bicubic":  # OpenCV's, as the protocol resizes
        resized = torch.from_numpy(np.stack([cv2.resize(m, (16, 11), interpolation=cv2.INTER_CUBIC)
                                             for m in low.double().numpy()])).float()
    else:
        mode = interpolation.removeprefix("torch-")
        resized = F.interpolate(low[:, None], size=(11, 16), mode=mode, align_corners=False)[:, 0]
    torch.testing.assert_close(high, minmax_normalize(resized), atol=1e-6, rtol=0)


def test_normalization_maps_nan_and_constant_maps_to_zeros() -> None:
    maps = torch.tensor(
        [[[1.0, 3.0], [2.0, 5.0]], [[1.0, float("nan")], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]]
    )

    out = minmax_normalize(maps)

    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert out[1:].eq(0).all()
    model = seeded(SmallCnn())
    x = images(size=8)
    x[1] = float("nan")
    for method in CAM_METHODS:
        maps = compute_cams(model, x, torch.tensor([0, 1, 2]), method, model.block, fc=model.fc)
        assert maps[1].eq(0).all() and maps[[0, 2]].amax(dim=(1, 2)).eq(1).all(), method


def test_torchvision_resnet18_all_methods() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    for method in CAM_METHODS:
        maps = compute_cams(model, x, torch.tensor([1, 4]), method, model.layer4, fc=model.fc, size=(64, 64))
        assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
        assert maps.amax(dim=(1, 2)).eq(1).all(), method
    assert all_hooks(model) == 0


def test_bad_arguments_raise_fcam_error() -> None:
    model = seeded(SmallCnn())
    x = images(size=8)
    with pytest.raises(FcamError, match="needs fc"):
        compute_cams(model, x, None, "cam", model.block)
    with pytest.raises(FcamError, match="unknown CAM method"):
        compute_cams(model, x, None, "nosuchcam", model.block)
    with pytest.raises(FcamError, match="targets must lie"):
        compute_cams(model, x, torch.tensor([0, 1, NUM_CLASSES]), "gradcam", model.block)
    with pytest.raises(FcamError, match="shape"):
        compute_cams(model, x, torch.tensor([0, 1]), "gradcam", model.block)
    shared = nn.Conv2d(3, 3, 3, padding=1)
    twice = nn.Sequential(shared, shared, nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(ValueError, match="ran 2 times"):
        compute_cams(twice, x, None, "gradcam", shared)
    with pytest.raises(FcamError, match="interpolation"):
        compute_cams(model, x, None, "gradcam", model.block, size=(8, 8), interpolation="nearest")


# --- one registry of methods -------------------------------------------------------------------------


def test_registry_is_the_one_list_of_methods() -> None:
    from fcam.cli.eval import MAP_METHODS, build_parser, check_methods
    from fcam.config import CamConfig

    names = tuple(CAM_METHODS)
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(CamConfig)}
    assert choices["method"] == names
    assert choices["gradcampp_variant"] == GRADCAMPP_VARIANTS == ("paper", "fcam-wsol")
    method_help = next(a.help for a in build_parser()._actions if a.dest == "method")
    assert set(MAP_METHODS) == {*names, "fcam"} and all(name in method_help for name in MAP_METHODS)
    check_methods(list(MAP_METHODS))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = re.search(r"`method` is one of `([^`]+)`", readme).group(1)
    assert tuple(listed.split(", ")) == names
    commands = re.search(r"scores trained models with any of `([^`]+)`", readme).group(1)
    assert set(commands.split()) == set(MAP_METHODS)
    assert all(callable(cam_method(name)) for name in names)


def test_a_method_is_one_function_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CAM_METHODS, "my-gradcam", CamMethod("fcam.cams.runners:gradcam"))
    model = seeded(SmallCnn())
    x = images(size=8)

    mine = compute_cams(model, x, None, "my-gradcam", model.block)

    torch.testing.assert_close(mine, compute_cams(model, x, None, "gradcam", model.block))


def test_explain_returns_maps_logits_and_targets() -> None:
    model = seeded(SmallCnn())
    x = images(batch=3, size=8)
    with torch.no_grad():
        logits = model(x)
    options = CamOptions(size=(8, 8), gradcampp_variant="fcam-wsol")

    result = explain(model, x, None, "gradcampp", model.block, options=options)

    assert isinstance(result, CamResult) and result.maps.shape == (3, 8, 8)
    torch.testing.assert_close(result.logits, logits)
    assert result.targets.tolist() == logits.argmax(1).tolist()
    torch.testing.assert_close(result.maps, compute_cams(model, x, None, "gradcampp", model.block, size=(8, 8),
                                                         gradcampp_variant="fcam-wsol"))
    given = torch.tensor([3, 0, 2])
    assert explain(model, x, given, "cam", model.block, fc=model.fc).targets.tolist() == [3, 0, 2]
    with pytest.raises(FcamError, match="scorecam_batch"):
        CamOptions(scorecam_batch=0)


def test_cam_map_fn_and_fcam_eval_use_the_configured_gradcampp_variant() -> None:
    from types import SimpleNamespace

    from fcam.config import load_config
    from fcam.engine.eval_run import map_function
    from fcam.metrics import normalize_scoremap, resize_scoremap

    model = seeded(SmallCnn())
    model.cam_target_layer = model.block
    batch = {"image": images(size=8), "label": torch.tensor([0, 1, 2])}
    cfg = load_config(None, ["cam.gradcampp_variant=fcam-wsol", "data.eval_size=8", "cam.interpolation=bilinear"])
    ctx = SimpleNamespace(device=torch.device("cpu"))

    maps, logits = map_function("gradcampp", cfg, ctx, model, None)(batch)

    expected = {variant: normalize_scoremap(resize_scoremap(
        compute_cams(model, batch["image"], batch["label"], "gradcampp", model.block,
                     gradcampp_variant=variant).double().numpy(), 8, "bilinear"))
        for variant in GRADCAMPP_VARIANTS}
    np.testing.assert_allclose(maps, expected["fcam-wsol"], atol=1e-6)
    assert np.abs(maps - expected["paper"]).max() > 0.05
    with torch.no_grad():
        torch.testing.assert_close(logits, model(batch["image"]))
    with pytest.raises(FcamError, match="gradcampp_variant"):
        load_config(None, ["cam.gradcampp_variant=torchcam-ish"])


# --- Score-CAM ---------------------------------------------------------------------------------------


def reference_scorecam(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                       to_maps: Callable = lambda t: t) -> np.ndarray:
    """Score-CAM one image and one channel at a time, as the authors' code loops."""
    out = []
    for i in range(len(x)):
        captured = []
        handle = layer.register_forward_hook(lambda m, inp, o: captured.append(o.detach().clone()))
        with torch.no_grad():
            model(x[i : i + 1])
        handle.remove()
        acts = to_maps(captured[0])[0]
        raw = torch.zeros(acts.shape[1:])
        for k in range(len(acts)):
            up = F.interpolate(acts[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
            if up.max() == up.min():
                continue
            mask = (up - up.min()) / (up.max() - up.min())
            with torch.no_grad():
                prob = torch.softmax(model(x[i : i + 1] * mask), dim=1)[0, targets[i]]
            raw += prob * acts[k]
        out.append(F.relu(raw).numpy())
    return reference_normalize(np.stack(out))


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_scorecam_matches_the_per_image_per_channel_loop(chunk: int) -> None:
    model = seeded(SmallCnn())
    x = images(batch=3, size=8)
    targets = torch.tensor([1, 3, 0])
    expected = reference_scorecam(model, model.block, x, targets)

    maps = compute_cams(model, x, targets, "scorecam", model.block, scorecam_batch=chunk)

    assert maps.amax(dim=(1, 2)).eq(1).all()
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


def test_scorecam_gives_a_constant_channel_no_weight() -> None:
    model = seeded(GapLinear())
    x = images()
    with torch.no_grad():
        model.features.weight[0].zero_()  # channel 0 is its bias everywhere: constant
        model.features.bias[0] = 5.0
        model.fc.weight[:, 0] = 1.0

    maps = compute_cams(model, x, torch.tensor([0, 1, 2]), "scorecam", model.features)

    np.testing.assert_allclose(maps.numpy(), reference_scorecam(model, model.features, x, torch.tensor([0, 1, 2])),
                               atol=1e-5)


# --- token models (ViT, Swin) ------------------------------------------------------------------------

GRADIENT_METHODS = ("gradcam", "gradcampp", "gradcampp-fcam-wsol", "smoothgradcampp", "xgradcam", "layercam")


def tiny_vit() -> tuple[nn.Module, nn.Module, Callable]:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=3).eval()
    with torch.no_grad():  # torchvision zero-initializes the head: give the classes distinct logits
        nn.init.normal_(model.heads.head.weight)
    return model, model.encoder.layers[-1].ln_1, lambda t: t[:, 1:].reshape(len(t), 4, 4, -1).permute(0, 3, 1, 2)


def tiny_swin() -> tuple[nn.Module, nn.Module, Callable]:
    torch.manual_seed(0)
    model = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[2, 2],
                            num_classes=3).eval()
    return model, model.features[-1][-1].norm1, lambda t: t.permute(0, 3, 1, 2)


def per_image_tokens(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                     to_maps: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Activations and gradients (1,K,h,w) of each image alone: a hook keeps the layer's output,
    plain autograd differentiates the target logit w.r.t. it."""
    acts, grads = [], []
    for i in range(len(x)):
        captured = []
        handle = layer.register_forward_hook(lambda m, inp, out: captured.append(out))
        try:
            logits = model(x[i : i + 1])
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(logits[0, targets[i]], captured[0])
        acts.append(to_maps(captured[0].detach()).double().numpy())
        grads.append(to_maps(grad).double().numpy())
    return np.concatenate(acts), np.concatenate(grads)


def token_reference(method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                    to_maps: Callable, noise: torch.Tensor, noise_std: float) -> np.ndarray:
    acts, grads = per_image_tokens(model, layer, x, targets, to_maps)
    if method != "smoothgradcampp":
        return reference_normalize(np.stack([reference_map(method, a, g, None) for a, g in zip(acts, grads)]))
    noisy = np.stack([per_image_tokens(model, layer, x + noise_std * noise[j], targets, to_maps)[1]
                      for j in range(len(noise))])
    return reference_normalize(np.stack([reference_smooth_map(acts[b], noisy[:, b], "paper")
                                         for b in range(len(x))]))


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("build", [tiny_vit, tiny_swin], ids=["vit", "swin"])
def test_token_models_batched_maps_equal_a_per_image_reference(build: Callable, method: str) -> None:
    model, layer, to_maps = build()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 2, 1])
    transform = vit_reshape() if build is tiny_vit else swin_reshape()
    n_samples, noise_std = 2, 0.2
    noise = torch.randn((n_samples, *x.shape), generator=torch.Generator().manual_seed(4))
    expected = token_reference(method, model, layer, x, targets, to_maps, noise, noise_std)
    name, _, variant = method.partition("-")

    maps = compute_cams(model, x, targets, name, layer, reshape_transform=transform,
                        gradcampp_variant=variant or "paper", n_samples=n_samples, noise_std=noise_std, generator=torch.Generator().manual_seed(4))

    assert maps.shape == (3, 4, 4) and maps.amax(dim=(1, 2)).eq(1).all()
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-4)
    assert all_hooks(model) == 0


def test_token_models_cam_and_scorecam() -> None:
    model, _, to_maps = tiny_swin()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 2])
    with torch.no_grad():
        acts = to_maps(model.norm(model.features(x)))
    expected = minmax_normalize(torch.einsum("bk,bkhw->bhw", model.head.weight[targets], acts))

    cam = compute_cams(model, x, targets, "cam", model.norm, fc=model.head, reshape_transform=swin_reshape())
    score = compute_cams(model, x, targets, "scorecam", model.norm, reshape_transform=swin_reshape(),
                         scorecam_batch=7)

    torch.testing.assert_close(cam, expected)
    np.testing.assert_allclose(score.numpy(), reference_scorecam(model, model.norm, x, targets, to_maps), atol=1e-4)


def test_reshape_transforms() -> None:
    tokens = torch.randn(2, 11, 3)
    grid = vit_reshape(grid=(2, 5))(tokens)
    assert grid.shape == (2, 3, 2, 5)
    torch.testing.assert_close(grid[1, :, 1, 3], tokens[1, 1 + 1 * 5 + 3])
    assert vit_reshape()(tokens[:, :10]).shape == (2, 3, 3, 3)
    with pytest.raises(FcamError, match="grid"):
        vit_reshape()(tokens)  # 10 patch tokens: no square grid
    with pytest.raises(FcamError, match="swin_reshape"):
        swin_reshape()(tokens)
    model, layer, _ = tiny_vit()
    with pytest.raises(ValueError, match="reshape_transform"):
        compute_cams(model, torch.randn(1, 3, 32, 32), None, "gradcam", layer)
