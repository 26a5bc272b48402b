"""The decoder's seed CAMs come from the F-CAM forward's classifier pass
(fcam.cams.explain_top_map): same maps as compute_cams, one classifier forward per training step."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from fcam.cams import CamOptions, compute_cams, explain, explain_top_map
from fcam.cams.registry import CAM_METHODS, TOP_MAP_CAM_METHODS
from fcam.config import config_from_dict
from fcam.engine.distributed import DistContext
from fcam.engine.loaders import split_metadata
from fcam.engine.seed_cams import seed_cams
from fcam.engine.tasks import DecoderTask
from fcam.errors import FcamError
from fcam.models import build_classifier, build_fcam

from conftest import tiny_config


@pytest.fixture(scope="module")
def fcam_model():
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", 5)
    # Larger head weights than the init's 0.01, so that the maps are far from constant.
    torch.nn.init.normal_(classifier.fc.weight, 0.0, 0.5)
    return build_fcam(classifier).eval()


def cams_from_top_map(classifier, top, targets, method, gradcampp_variant="paper"):
    options = CamOptions(gradcampp_variant=gradcampp_variant)
    return explain_top_map(top, classifier.head, targets, method, fc=classifier.fc, options=options).maps


def test_top_map_methods_are_the_registry_flags() -> None:
    assert TOP_MAP_CAM_METHODS == ("cam", "gradcam", "gradcampp", "xgradcam", "layercam")
    assert all(CAM_METHODS[m].top_map for m in TOP_MAP_CAM_METHODS)


@pytest.mark.parametrize("method, variant", [(m, "paper") for m in TOP_MAP_CAM_METHODS] + [("gradcampp", "torchcam")])
def test_top_map_cams_equal_compute_cams(fcam_model, method: str, variant: str) -> None:
    images = torch.randn(4, 3, 64, 56, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 4, 1])
    classifier = fcam_model.classifier
    with torch.no_grad():
        out = fcam_model(images)
    ours = seed_cams(classifier, images, labels, out["features"], method, gradcampp_variant=variant)
    reference = compute_cams(classifier, images, labels, method, classifier.cam_target_layer, fc=classifier.fc,
                             size=(64, 56), gradcampp_variant=variant)
    assert ours.shape == (4, 64, 56)
    assert (reference.flatten(1).amax(1) == 1.0).sum() >= 2  # non-trivial maps
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_top_map_gradients_leave_the_classifier_untouched(fcam_model) -> None:
    classifier = fcam_model.classifier
    with torch.no_grad():
        top = fcam_model(torch.randn(2, 3, 32, 32))["features"][-1]
    cams = cams_from_top_map(classifier, top, torch.tensor([1, 2]), "gradcam")
    assert not cams.requires_grad and cams.shape == top.shape[:1] + top.shape[2:]
    assert all(p.grad is None for p in classifier.parameters())


def test_top_map_from_inference_mode(fcam_model) -> None:
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    with torch.inference_mode():
        top = fcam_model(images)["features"][-1]
        cams = cams_from_top_map(fcam_model.classifier, top, labels, "xgradcam")
    with torch.no_grad():
        expected = cams_from_top_map(fcam_model.classifier, fcam_model(images)["features"][-1], labels, "xgradcam")
    torch.testing.assert_close(cams, expected)


def test_top_map_result_has_the_logits_and_predicted_targets(fcam_model) -> None:
    classifier = fcam_model.classifier
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        top = fcam_model(images)["features"][-1]
    ours = explain_top_map(top, classifier.head, None, "gradcam", options=CamOptions(size=(32, 32)))
    reference = explain(classifier, images, None, "gradcam", classifier.cam_target_layer,
                        options=CamOptions(size=(32, 32)))
    torch.testing.assert_close(ours.logits, reference.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours.targets, reference.targets)
    torch.testing.assert_close(ours.maps, reference.maps, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["smoothgradcampp", "scorecam"])
def test_top_map_refuses_methods_needing_a_forward(fcam_model, method: str) -> None:
    top = torch.rand(1, 512, 2, 2)
    with pytest.raises(FcamError, match="needs its own forward"):
        cams_from_top_map(fcam_model.classifier, top, torch.tensor([0]), method)
    with pytest.raises(FcamError, match="gradcampp_variant"):
        cams_from_top_map(fcam_model.classifier, top, torch.tensor([0]), "gradcampp", gradcampp_variant="x")


def _decoder_task(synth_root, tmp_path, method: str) -> DecoderTask:
    cfg = config_from_dict(yaml.safe_load(yaml.safe_dump(tiny_config(synth_root, cam={"method": method}))))
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", 3).eval()
    return DecoderTask(cfg, ctx, split_metadata(cfg, cfg.data.train_split), split_metadata(cfg, cfg.data.val_split),
                       classifier)


@pytest.mark.parametrize("method, passes", [("cam", 1), ("gradcam", 1), ("layercam", 1), ("smoothgradcampp", 2)])
def test_decoder_step_runs_the_classifier_once(synth_root, tmp_path, method: str, passes: int) -> None:
    task = _decoder_task(synth_root, tmp_path, method)
    task.model.train()
    task.set_epoch(0)
    batch = next(iter(task.train_loader))
    calls = []
    handle = task.model.classifier.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        terms = task.losses(batch)
    finally:
        handle.remove()
    # Smooth-Grad-CAM++ needs its noisy forwards: it keeps a pass of its own.
    assert len(calls) == passes
    terms["loss"].backward()
    assert all(p.grad is None for p in task.model.classifier.parameters())
    assert all(p.grad is not None for p in task.model.decoder.parameters())


def test_decoder_step_seeds_equal_the_two_pass_seeds(synth_root, tmp_path) -> None:
    task = _decoder_task(synth_root, tmp_path, "gradcampp")
    task.model.train()
    task.set_epoch(0)
    batch = next(iter(task.train_loader))
    images, labels = batch["image"], batch["label"]
    classifier = task.model.classifier
    with torch.no_grad():
        features = copy.deepcopy(task.model)(images)["features"]
    new = task.seeds(seed_cams(classifier, images, labels, features, "gradcampp"),
                     generator=torch.Generator().manual_seed(5))
    old = task.seeds(compute_cams(classifier, images, labels, "gradcampp", classifier.cam_target_layer,
                                  fc=classifier.fc, size=tuple(images.shape[-2:])),
                     generator=torch.Generator().manual_seed(5))
    assert torch.equal(new, old)
