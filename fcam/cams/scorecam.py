"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks", CVPRW 2020): gradient-free, one forward pass per channel and image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fcam.cams.job import CamJob
from fcam.cams.methods import scorecam_map
from fcam.cams.normalize import minmax_normalize


def scorecam(job: CamJob) -> Tensor:
    """Score-CAM maps relu(sum_k s_k A_k) of the batch.

    Each channel A_k is upsampled to the input size (torch bilinear), min-max normalized to a
    mask H_k in [0, 1], and s_k is the target class's softmax probability of the masked input
    ``images * H_k``, as the authors' code computes it (no baseline subtracted); a constant
    channel gets s_k = 0 (the authors' code skips it). The map combines the activations at the
    target layer's resolution, like the other methods, before the common resize and
    normalization.

    All B*K masked inputs go through the model in chunks of ``options.scorecam_batch`` images,
    without gradients: K forward passes per image, each mask built in its chunk only.
    """
    acts = job.activations()
    images, targets = job.images, job.targets
    batch, channels = acts.shape[:2]
    channel_maps = acts.flatten(0, 1)  # (B*K,h,w): image-major
    scores = acts.new_zeros(batch * channels)
    chunk = job.options.scorecam_batch
    with torch.no_grad():
        for start in range(0, batch * channels, chunk):
            rows = torch.arange(start, min(start + chunk, batch * channels), device=acts.device)
            upsampled = F.interpolate(channel_maps[rows, None], size=images.shape[-2:], mode="bilinear",
                                      align_corners=False)[:, 0]
            masks = minmax_normalize(upsampled)
            owner = rows // channels
            logits = job.model(images[owner] * masks[:, None].to(images.dtype))
            probs = torch.softmax(logits.float(), dim=1).gather(1, targets[owner, None])[:, 0]
            informative = masks.flatten(1).amax(dim=1) > 0  # constant (or NaN) channels get 0
            scores[rows] = torch.where(informative, probs, torch.zeros_like(probs))
    return scorecam_map(acts, scores.view(batch, channels))
