"""Inference copies of F-CAM models: the same maps for less compute.

The copy folds each decoder BatchNorm (eval statistics) into the 3x3 convolution before it
and runs in the layout of :func:`fcam.models.layout.fast_memory_format` (channels_last on
the CPU), its decoder weights included. The model it comes from is left as it is, so training,
``state_dict`` and checkpoints do not change.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fcam.models.fcam_model import FCAMModel
from fcam.models.layout import fast_memory_format


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode where every BatchNorm2d that directly follows a Conv2d in
    an ``nn.Sequential`` is folded into that conv (weights scaled, bias added) and replaced by an
    identity. Outputs equal the eval-mode original's up to float rounding."""
    folded = copy.deepcopy(module).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None:
                seq[i] = _folded_conv(conv, bn)
                seq[i + 1] = nn.Identity()
    return folded


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by bn (eval) as one conv: W' = W * s, b' = (b - mean) * s + beta, s = gamma / std."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
        fused.bias = nn.Parameter(shift.detach().clone(), requires_grad=False)
    return fused


class FCAMInference(nn.Module):
    """Eval-only F-CAM: the model's classifier (shared, frozen) and a BatchNorm-folded copy of its
    decoder; ``forward`` returns the same dict as :class:`FCAMModel`'s. Built by
    :func:`inference_copy`; a snapshot: later changes to the model's decoder do not reach it."""

    def __init__(self, model: FCAMModel, channels_last: bool) -> None:
        super().__init__()
        self.classifier = model.classifier
        self.decoder = fold_batchnorm(model.decoder).requires_grad_(False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.decoder.to(memory_format=self.memory_format)
        self.eval()

    def train(self, mode: bool = True) -> "FCAMInference":
        if mode:
            raise ValueError("an F-CAM inference copy is eval-only; train the FCAMModel it was made from")
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        # A channels_last input makes the classifier's convolutions, and so its features, channels_last.
        features, logits = self.classifier.forward_features(x.contiguous(memory_format=self.memory_format))
        seg_logits = self.decoder(features, x.shape[-2:])
        return {"logits": logits, "seg_logits": seg_logits.contiguous(), "features": features}


def inference_copy(model: FCAMModel, channels_last: bool | None = None) -> FCAMInference:
    """An eval-only copy of ``model`` computing the same outputs faster.

    Args:
        model: a (trained) F-CAM model; it is not modified.
        channels_last: run in the channels_last memory format; None (default): as
            :func:`fcam.models.layout.fast_memory_format` chooses for the model's device.

    Returns:
        An :class:`FCAMInference` on the model's device.
    """
    if channels_last is None:
        channels_last = fast_memory_format(next(model.decoder.parameters()).device) == torch.channels_last
    return FCAMInference(model, channels_last)
