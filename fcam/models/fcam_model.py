"""F-CAM: a frozen WSOL classifier plus a trainable U-Net decoder on its features."""

from __future__ import annotations

import torch
from torch import nn

from fcam.models.classifier import WSOLClassifier
from fcam.models.decoder import UNetDecoder
from fcam.models.layout import fast_memory_format


class FCAMModel(nn.Module):
    """Frozen classifier (no gradients, BatchNorm/dropout always in eval) + decoder.

    ``forward(x)`` returns ``logits`` (B, K), ``seg_logits`` (B, 2, H, W) at x's
    size and the classifier's ``features``, whose last entry is the top map (the CAM
    target layer's output): with the logits, what the decoder's seed CAMs need, so a
    training step runs the classifier once. S = softmax(seg_logits, 1); S[:, 1] is
    the F-CAM (foreground) map. The classifier runs without autograd: only the
    decoder trains.
    """

    def __init__(self, classifier: WSOLClassifier, decoder: UNetDecoder) -> None:
        super().__init__()
        self.classifier = classifier
        self.decoder = decoder
        self.classifier.requires_grad_(False)
        self.classifier.eval()

    def train(self, mode: bool = True) -> "FCAMModel":
        super().train(mode)
        self.classifier.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        # The layout changes the float rounding only; it makes the CPU's convolutions faster.
        x = x.contiguous(memory_format=fast_memory_format(x.device))
        with torch.no_grad():
            features, logits = self.classifier.forward_features(x)
        seg_logits = self.decoder(features, x.shape[-2:])
        return {"logits": logits, "seg_logits": seg_logits, "features": features}
