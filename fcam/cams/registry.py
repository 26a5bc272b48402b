"""The CAM methods by name: one plain dict, the single source of the config's choices, the
``fcam-eval --method`` list, the README's list and the error messages.

This module imports no torch (the config is validated and the commands answer ``--help``
before any model exists): each entry names its function as ``"module:function"``, imported
on first use by :func:`cam_method`. A method's function takes a :class:`fcam.cams.job.CamJob`
(the batch being explained, which runs the forward and backward passes the method asks for)
and returns the raw maps (B,h,w) at the target layer's resolution; resizing and min-max
normalization follow for every method alike. Adding a method is that function plus one line
here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fcam.errors import FcamError


@dataclass(frozen=True)
class CamMethod:
    """Where a method's function is, and which passes it needs.

    ``entry`` is ``"module:function"``; ``per_channel`` marks methods that run one forward
    pass per channel of the target layer and image (Score-CAM): scripts that loop over every
    method (demo, benchmarks, device checks) leave them out by default. ``top_map`` marks
    methods that need only the target layer's output and, through the rest of the model, its
    gradient: they also run on a :class:`fcam.cams.job.TopMapJob` (the F-CAM decoder's seeds
    reuse the training forward's top map that way).
    """

    entry: str
    per_channel: bool = False
    top_map: bool = False


CAM_METHODS: dict[str, CamMethod] = {
    "cam": CamMethod("fcam.cams.runners:cam", top_map=True),
    "gradcam": CamMethod("fcam.cams.runners:gradcam", top_map=True),
    "gradcampp": CamMethod("fcam.cams.runners:gradcampp", top_map=True),
    "smoothgradcampp": CamMethod("fcam.cams.runners:smoothgradcampp"),
    "xgradcam": CamMethod("fcam.cams.runners:xgradcam", top_map=True),
    "layercam": CamMethod("fcam.cams.runners:layercam", top_map=True),
    "scorecam": CamMethod("fcam.cams.scorecam:scorecam", per_channel=True),
}

# The methods costing one forward (and one backward) pass per batch.
ONE_PASS_CAM_METHODS: tuple[str, ...] = tuple(name for name, m in CAM_METHODS.items() if not m.per_channel)

# The methods computed from a known top map (no forward pass of their own).
TOP_MAP_CAM_METHODS: tuple[str, ...] = tuple(name for name, m in CAM_METHODS.items() if m.top_map)

# GradCAM++ (and Smooth-GradCAM++) formulas: "paper" is Chattopadhay et al.'s alpha;
# "fcam-wsol" is what sbelharbi/fcam-wsol and torchcam compute (see fcam.cams.methods).
GRADCAMPP_VARIANTS: tuple[str, ...] = ("paper", "fcam-wsol")
# Older Python name of "fcam-wsol", still accepted.
GRADCAMPP_ALIASES: dict[str, str] = {"torchcam": "fcam-wsol"}


def check_cam_method(name: str) -> str:
    """``name`` if it is a registered method, else FcamError listing them."""
    if name not in CAM_METHODS:
        raise FcamError(f"unknown CAM method {name!r}; expected one of {', '.join(CAM_METHODS)}")
    return name


def cam_method(name: str) -> Callable[[Any], Any]:
    """The function of method ``name`` (imported now): ``CamJob -> raw maps (B,h,w)``."""
    module, _, function = CAM_METHODS[check_cam_method(name)].entry.partition(":")
    return getattr(importlib.import_module(module), function)


def gradcampp_variant(name: str) -> str:
    """The canonical GradCAM++ variant of ``name`` (an alias resolved), else FcamError."""
    canonical = GRADCAMPP_ALIASES.get(name, name)
    if canonical not in GRADCAMPP_VARIANTS:
        choices = ", ".join((*GRADCAMPP_VARIANTS, *GRADCAMPP_ALIASES))
        raise FcamError(f"unknown gradcampp_variant {name!r}; expected one of {choices}")
    return canonical
