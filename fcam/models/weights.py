"""Loading classifier weights: torchvision ImageNet checkpoints (hub or file) and saved classifiers."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from fcam.errors import FcamError
from fcam.models.classifier import WSOLClassifier

_SHOWN_KEYS = 5


def download_imagenet(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The torchvision ImageNet state dict, from the torch hub cache or downloaded into it."""
    try:
        # Looked up on torch.hub at call time (not imported) so tests can stub the download.
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad hash a RuntimeError
        filename = os.path.basename(urlparse(weights.url).path)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise FcamError(
            f"cannot download ImageNet weights {weights.url} ({err}); without network, "
            f"copy that file to {cached} or pass its path as the pretrained weights"
        ) from err


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) read from ``path``, with FcamError for anything else."""
    if not path.is_file():
        raise FcamError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise FcamError(f"{path}: not a readable PyTorch weights file ({err})") from err
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise FcamError(f"{path}: expected a state dict (parameter name -> tensor)")
    return dict(state)


def _check_compatible(
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    required: list[str],
    source: str,
    what: str,
) -> None:
    missing = [k for k in required if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in state
        if k in target and state[k].shape != target[k].shape
    ]
    problems = [
        f"{label} {items[:_SHOWN_KEYS]}{' ...' if len(items) > _SHOWN_KEYS else ''}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", mismatched),
        )
        if items
    ]
    if problems:
        raise FcamError(f"{source}: does not fit {what}: " + "; ".join(problems))


def load_backbone_state(classifier: WSOLClassifier, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a torchvision-format state dict of the whole network into the classifier's trunk.

    Keys the trunk drops (the ImageNet head, layers past the top map) are ignored;
    every trunk tensor except those of the new layers must be present.
    """
    encoder = classifier.encoder
    kept = encoder.trunk_state(state)
    target = encoder.state_dict()
    required = [
        k for k in target if not encoder.is_new_parameter(k) and not k.endswith("num_batches_tracked")
    ]
    what = f"the {classifier.backbone} backbone (torchvision format)"
    _check_compatible(kept, target, required, source, what)
    encoder.load_state_dict(kept, strict=False)


def load_classifier_state(classifier: WSOLClassifier, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a full ``WSOLClassifier.state_dict()`` (keys ``encoder.*`` and ``fc.*``)."""
    target = classifier.state_dict()
    what = f"a {classifier.backbone} classifier with {classifier.num_classes} classes"
    _check_compatible(state, target, list(target), source, what)
    classifier.load_state_dict(state)


def load_weights_file(classifier: WSOLClassifier, path: Path) -> None:
    """Load ``path``: a full classifier state dict, or torchvision-format ImageNet weights."""
    state = read_state_dict(path)
    if any(k.startswith("encoder.") for k in state):
        load_classifier_state(classifier, state, str(path))
    else:
        load_backbone_state(classifier, state, str(path))
