"""F-CAM's decoder training loss (Eq. 3): alpha * partial CE on seeds + dense CRF + size constraint."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcam.losses.crf import DenseCRFLoss
from fcam.losses.pce import partial_cross_entropy
from fcam.losses.size import SizeConstraintLoss

__all__ = ["FCAMLoss"]


class FCAMLoss(nn.Module):
    """Sum of the three terms; a term left as None contributes 0.

    The classification term of Eq. 3 is absent: the classifier is frozen.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        crf: DenseCRFLoss | None = None,
        size: SizeConstraintLoss | None = None,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.crf = crf
        self.size = size

    def forward(self, seg_logits: Tensor, raw_images: Tensor, seed_labels: Tensor) -> dict[str, Tensor]:
        """Loss terms of (B, 2, H, W) logits, (B, 3, H, W) 0..255 images and (B, H, W) seed labels.

        Returns ``total``, ``pce``, ``crf`` and ``size`` (unweighted PCE, the other two weighted).
        """
        probs = torch.softmax(seg_logits, dim=1)
        zero = seg_logits.new_zeros(())
        pce = partial_cross_entropy(seg_logits, seed_labels)
        crf = self.crf(raw_images, probs) if self.crf is not None else zero
        size = self.size(probs) if self.size is not None else zero
        total = self.alpha * pce + crf + size
        return {"total": total, "pce": pce, "crf": crf, "size": size}
