"""Any torchvision classification model as a WSOL trunk (``model.backbone: torchvision/<name>``).

The model is built by torchvision (random init) and cut with its feature-extraction utility
at the nodes :func:`fcam.models.feature_taps.find_taps` picks; its own head (pooling,
classifier) is dropped, the WSOL head (GAP + linear) of ``WSOLClassifier`` replaces it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from fcam.errors import FcamError
from fcam.models.encoder import WSOLEncoder
from fcam.models.feature_taps import find_taps
from fcam.models.registry import TORCHVISION_PREFIX, output_stride_problem

# registry.OUTPUT_STRIDES other than 0: torchvision ResNets (Bottleneck blocks) dilate their last
# stages instead of striding them.
_DILATIONS = {8: [False, True, True], 16: [False, False, True]}
_LIST_MODELS = "python -c 'import torchvision; print(torchvision.models.list_models(module=torchvision.models))'"


def build_torchvision_model(name: str, output_stride: int = 0) -> nn.Module:
    """torchvision's model ``name`` (random init, ImageNet's 1000 classes, so that its
    checkpoints load), its last stages dilated to ``output_stride`` (8 or 16) if not 0."""
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(TORCHVISION_PREFIX + c for c in close)}? " if close else ""
        raise FcamError(f"unknown torchvision model {name!r} in backbone {TORCHVISION_PREFIX}{name}; {hint}"
                        f"valid names are those of torchvision.models.list_models(module=torchvision.models) "
                        f"(list them with: {_LIST_MODELS})")
    kwargs = {}
    if output_stride:
        if output_stride not in _DILATIONS:
            raise FcamError(f"output stride (model.output_stride) {output_stride_problem(output_stride)}")
        kwargs["replace_stride_with_dilation"] = _DILATIONS[output_stride]
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, NotImplementedError, ValueError) as err:
        if not kwargs:
            raise
        raise _no_dilation(name, output_stride, str(err)) from None


def _no_dilation(name: str, output_stride: int, reason: str) -> FcamError:
    return FcamError(f"{TORCHVISION_PREFIX}{name} cannot run at output stride {output_stride} (model.output_stride): "
                     f"{reason}; torchvision's replace_stride_with_dilation works for ResNet-50/101/152, ResNeXt "
                     f"and Wide ResNet; use 0 for the model's own stride")


def _decoder_channels(top_stride: int) -> tuple[int, ...]:
    """One U-Net block per x2 from the top map to the input (at least one), with the channels
    the ResNet decoder has at the block's output resolution: 16 at stride 1, doubling per
    stride up to 256."""
    channels = []
    stride = top_stride // 2
    while stride >= 1:
        channels.append(min(256, 16 * stride))
        stride //= 2
    return tuple(channels) or (16,)


class TorchvisionEncoder(WSOLEncoder):
    """Trunk cut from torchvision's classification model ``name``.

    ``body`` returns the picked nodes: the skips, one per stride level below the top map
    (highest resolution first), then the top map, which passes through ``top`` (an
    identity), the CAM target layer: the node producing the top map may be a function or a
    module called several times, which hooks cannot single out. ``feature_names`` are the
    picked nodes (module paths of the torchvision model). Parameter names are torchvision's
    under ``body.``; no layer is new, and only the head gets the larger learning rate.
    """

    def __init__(self, name: str, output_stride: int = 0) -> None:
        super().__init__()
        net = build_torchvision_model(name, output_stride)
        try:
            taps = find_taps(net)
        except ValueError as err:
            raise FcamError(f"{TORCHVISION_PREFIX}{name} cannot serve as a WSOL trunk: {err}; it needs a "
                            f"(B, C, h, w) feature map at any input size (ViT and MaxViT have none)") from None
        if output_stride and taps.strides[-1] != output_stride:
            raise _no_dilation(name, output_stride, f"its top map has stride {taps.strides[-1]}")
        self.body = create_feature_extractor(net, return_nodes=list(taps.nodes), suppress_diff_warning=True)
        self.top = nn.Identity()
        self.feature_names = taps.nodes
        self.strides = taps.strides
        self.out_channels = taps.channels
        self.decoder_channels = _decoder_channels(taps.strides[-1])
        trunk_keys = {f"body.{k}" for k in self.body.state_dict()}
        # Keys of the whole torchvision model that the trunk leaves out (its head, ...).
        self._dropped = frozenset(k for k in net.state_dict() if f"body.{k}" not in trunk_keys)

    @property
    def cam_target_layer(self) -> nn.Module:
        return self.top

    def trunk_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"body.{k}": v for k, v in state.items() if k not in self._dropped}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        features = [out[name] for name in self.feature_names]
        features[-1] = self.top(features[-1])
        return features
