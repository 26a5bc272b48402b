"""One batch being explained: the passes a CAM method asks for, and what they resolve.

A method's function (see ``fcam.cams.registry``) calls one of :meth:`CamJob.activations` or
:meth:`CamJob.gradients` once; that forward pass also fixes the job's ``logits`` and ``targets``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcam.cams.capture import forward_with_activations
from fcam.cams.types import CamOptions
from fcam.errors import FcamError


class CamJob:
    """The model, the batch and the options of one :func:`fcam.cams.explain` call.

    ``logits`` (B,C) and ``targets`` (B,) are set by the first forward pass: the given
    targets, checked, or the predicted classes.
    """

    def __init__(self, model: nn.Module, images: Tensor, targets: Tensor | None, target_layer: nn.Module,
                 fc: nn.Linear | None, options: CamOptions) -> None:
        self.model, self.images, self.target_layer = model, images, target_layer
        self.fc, self.options = fc, options
        self.requested_targets = targets
        self.logits: Tensor | None = None
        self.targets: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    def activations(self) -> Tensor:
        """The target layer's output A (B,K,h,w), float32, from one forward pass without gradients."""
        logits, raw = self._forward(self.images, track_grad=False)
        return self._to_maps(raw).float()

    def gradients(self, inputs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A (B,K,h,w) of the images and g = d score / dA, both float32.

        ``inputs`` None: g at the images (B,K,h,w). Else ``inputs`` holds copies of the batch
        (n*B,C,H,W, copy-major, e.g. noisy ones): they share the images' forward pass and g
        is theirs (n*B,K,h,w), copy ``j`` of image ``i`` at row ``j*B + i``. The score sums each
        row's target logit; with the model in eval mode the rows do not interact, so one
        ``torch.autograd.grad`` gives each row its own gradient.
        """
        batch = self.batch_size
        model_input = self.images if inputs is None else torch.cat([self.images, inputs])
        logits, leaf = self._forward(model_input, track_grad=True)
        scored = logits if inputs is None else logits[batch:]
        with torch.enable_grad():
            row_targets = self.targets.repeat(scored.shape[0] // batch)
            score = scored.gather(1, row_targets[:, None]).sum()
        (grads,) = torch.autograd.grad(score, leaf)
        if inputs is not None:
            grads = grads[batch:]
        return self._to_maps(leaf[:batch].detach()).float(), self._to_maps(grads).float()

    def class_weights(self, num_channels: int) -> Tensor:
        """Rows of the linear classifier ``fc`` for each image's target class (B,K)."""
        if not isinstance(self.fc, nn.Linear):
            raise FcamError("CAM method 'cam' needs fc, the model's final nn.Linear layer")
        if self.fc.in_features != num_channels:
            raise FcamError(
                f"fc takes {self.fc.in_features} features but the target layer has {num_channels} channels"
            )
        return self.fc.weight.detach()[self.targets].float()

    def _forward(self, model_input: Tensor, track_grad: bool) -> tuple[Tensor, Tensor]:
        """Logits of ``model_input`` and the layer's raw output; sets the job's logits and targets."""
        transform = self.options.reshape_transform
        logits, raw = forward_with_activations(self.model, model_input, self.target_layer, track_grad,
                                               require_maps=transform is None)
        self.logits = logits[: self.batch_size].detach()
        self.targets = _resolve_targets(self.requested_targets, self.logits)
        return logits, raw

    def _to_maps(self, output: Tensor) -> Tensor:
        """The layer's output (or its gradient) as (N,K,h,w), through the reshape transform if any."""
        transform = self.options.reshape_transform
        maps = output if transform is None else transform(output)
        if not isinstance(maps, Tensor) or maps.ndim != 4:
            got = f"shape {tuple(maps.shape)}" if isinstance(maps, Tensor) else type(maps).__name__
            raise FcamError(f"reshape_transform must return a (B,K,h,w) tensor, got {got}")
        return maps


class TopMapJob(CamJob):
    """A batch whose target-layer output is already known: the methods flagged ``top_map`` in
    :data:`fcam.cams.registry.CAM_METHODS` run on it without another forward pass.

    ``top`` (B,K,h,w) is the target layer's output and ``head`` the rest of the model (top map
    to logits). Gradients flow through ``head`` only, from a detached copy of ``top``: nothing
    before the target layer is run again or differentiated, and no parameter gets a gradient.
    """

    def __init__(self, top: Tensor, head, targets: Tensor | None, fc: nn.Linear | None,
                 options: CamOptions) -> None:
        super().__init__(head, top, targets, target_layer=None, fc=fc, options=options)

    def activations(self) -> Tensor:
        with torch.no_grad():
            self._score(self.images.detach())
        return self.images.detach().float()

    def gradients(self, inputs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if inputs is not None:
            raise ValueError("a TopMapJob has no model input to perturb: run the method on a CamJob")
        with torch.inference_mode(False), torch.enable_grad():
            # A map made under inference_mode cannot require grad: a normal copy of it can.
            top = self.images
            leaf = (top.clone() if top.is_inference() else top.detach()).requires_grad_()
            score = self._score(leaf).gather(1, self.targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, leaf)
        return leaf.detach().float(), grads.float()

    def _score(self, top: Tensor) -> Tensor:
        """The head's logits of ``top``; sets the job's logits and targets."""
        logits = self.model(top)
        self.logits = logits.detach()
        self.targets = _resolve_targets(self.requested_targets, self.logits)
        return logits


def _resolve_targets(targets: Tensor | None, logits: Tensor) -> Tensor:
    """Per-image target classes on the logits' device: the given ones, checked, or the argmax."""
    if targets is None:
        return logits.argmax(dim=1)
    batch_size, num_classes = logits.shape
    if targets.shape != (batch_size,) or targets.is_floating_point() or targets.is_complex():
        raise FcamError(
            f"targets must be an integer tensor of shape ({batch_size},), "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    targets = targets.to(device=logits.device, dtype=torch.long)
    outside = (targets < 0) | (targets >= num_classes)
    if outside.any():
        raise FcamError(f"targets must lie in [0, {num_classes}), got {targets[outside].tolist()}")
    return targets
