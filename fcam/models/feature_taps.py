"""Which nodes of a torchvision classification model a WSOL trunk taps: its top map (the last
feature map before global pooling) and one decoder skip per stride level below it.

The model's eval-mode graph (``torchvision.models.feature_extraction``) is run on the meta
device, which computes shapes without arithmetic, at two square input sizes. A node
outputs a feature map when it is a (B, C, h, w) tensor whose h and w both grow with the
input; its stride is the input's growth over the map's growth, which is exact whatever the
padding. Pooled maps, channels-last maps and token maps do not grow that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn
from torch.func import functional_call
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

PROBE_SIZES = (256, 512)


@dataclass(frozen=True)
class FeatureTaps:
    """Return nodes for ``create_feature_extractor`` (highest resolution first, top map
    last), named by the outermost module they end, with their strides and channels."""

    nodes: tuple[str, ...]
    strides: tuple[int, ...]
    channels: tuple[int, ...]


def find_taps(model: nn.Module) -> FeatureTaps:
    """The top map and the skips of ``model`` (see the module's docstring).

    Skips: for each stride level below the top map's, the map a stage hands to the next,
    coarser one (the input of the outermost module where the stride grows), so that
    EfficientNet gives ``features.1`` and not the expansion conv inside ``features.2``.
    Levels are taken from the top's stride / 2 downwards while each one exists, so that
    decoder block i (upsampling x2) meets skip i.

    Raises ValueError when the model has no feature map (e.g. ViT) or cannot be traced or
    run at the probe sizes.
    """
    nodes, shapes = _probe(model)
    maps = [(name, stride) for name in nodes if name in shapes
            if (stride := _stride(*shapes[name])) is not None]
    if not maps:
        raise ValueError("no (B, C, h, w) feature map whose size follows the input's")
    top, top_stride = maps[-1]
    level_outputs: dict[int, str] = {}
    level = maps[0][1]
    for i, (_, stride) in enumerate(maps):
        if stride > level:
            level_outputs[level] = _stage_output(maps, i, level)
            level = stride
    picked = []
    level = top_stride // 2
    while level in level_outputs:
        picked.insert(0, level_outputs[level])
        level //= 2
    picked.append(top)
    stride_of = dict(maps)
    module_of = _outermost_modules(nodes)
    return FeatureTaps(nodes=tuple(module_of[n] for n in picked),
                       strides=tuple(stride_of[n] for n in picked),
                       channels=tuple(shapes[n][0][1] for n in picked))


def _probe(model: nn.Module) -> tuple[list[str], dict[str, tuple[torch.Size, torch.Size]]]:
    """Eval-graph node names in execution order, and the shapes at both probe sizes of the
    nodes that output a 4-D tensor (other than the input)."""
    try:
        train_nodes, eval_nodes = get_graph_node_names(model, suppress_diff_warning=True)
        probe = create_feature_extractor(model, train_return_nodes=train_nodes, eval_return_nodes=eval_nodes,
                                         suppress_diff_warning=True).eval()
        meta = {name: torch.empty_like(t, device="meta")
                for name, t in chain(probe.named_parameters(), probe.named_buffers())}
        outputs = []
        for size in PROBE_SIZES:
            image = torch.empty(1, 3, size, size, device="meta")
            out = functional_call(probe, meta, (image,))
            outputs.append({k: v.shape for k, v in out.items()
                            if isinstance(v, torch.Tensor) and v.ndim == 4 and v is not image})
    # Arbitrary model code: tracing or running it may fail in any way.
    except Exception as err:
        raise ValueError(f"tracing or running it at {PROBE_SIZES} px failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from err
    return eval_nodes, {k: (outputs[0][k], outputs[1][k]) for k in outputs[0] if k in outputs[1]}


def _stride(small: torch.Size, large: torch.Size) -> int | None:
    """A map's stride from its (B, C, h, w) shapes at the two probe sizes; None if h or w
    does not grow with the input or they disagree."""
    growth = PROBE_SIZES[1] - PROBE_SIZES[0]
    exponents = set()
    for a, b in zip(small[2:], large[2:]):
        if b <= a:
            return None
        exponents.add(round(math.log2(growth / (b - a))))
    if len(exponents) != 1 or min(exponents) < 0:
        return None
    return 2 ** exponents.pop()


def _stage_output(maps: list[tuple[str, int]], first_coarser: int, level: int) -> str:
    """The map at stride ``level`` handed to the node ``maps[first_coarser]``, the first one
    at a coarser stride: the map just before the outermost module that contains that node
    and starts after a map at ``level``."""
    parts = maps[first_coarser][0].split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        start = next(i for i, (name, _) in enumerate(maps) if name == prefix or name.startswith(prefix + "."))
        if start > 0 and maps[start - 1][1] == level:
            return maps[start - 1][0]
    return [name for name, stride in maps[:first_coarser] if stride == level][-1]


def _outermost_modules(nodes: list[str]) -> dict[str, str]:
    """Node name -> the shortest module path whose last node it is: what
    ``create_feature_extractor`` resolves that path to ("layer4" for "layer4.2.relu_2")."""
    last: dict[str, int] = {}
    for i, name in enumerate(nodes):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            last[".".join(parts[:depth])] = i
    outermost = {}
    for i, name in enumerate(nodes):
        parts = name.split(".")
        outermost[name] = next(p for d in range(1, len(parts) + 1)
                               if last[p := ".".join(parts[:d])] == i)
    return outermost
