"""One forward pass that also returns a chosen layer's output (the CAM activations)."""

import torch
from torch import Tensor, nn


def forward_with_activations(
    model: nn.Module, images: Tensor, target_layer: nn.Module, track_grad: bool, require_maps: bool = True
) -> tuple[Tensor, Tensor]:
    """Run ``model(images)`` once; return its logits (N,C) and ``target_layer``'s output (N,K,h,w).

    ``require_maps=False`` accepts an output tensor of any shape (e.g. the tokens (N,T,D) of a
    transformer block, which the caller then reshapes to maps).

    With ``track_grad`` the layer's output is swapped for a detached leaf that requires
    grad, and grad mode is switched on from that point of the forward only: the logits
    are then differentiable w.r.t. the leaf whatever the parameters' ``requires_grad``
    flags or the caller's grad mode, no graph is built for the layers before it, and
    ``torch.autograd.grad(score, leaf)`` touches no parameter's ``.grad``.

    The model's train/eval mode is left as it is: the caller chooses it (``eval()`` for
    CAMs, so that BatchNorm does not mix the images of a batch). The hook is removed
    before returning, also when the forward raises.
    """
    captured: list[Tensor] = []

    def capture(module: nn.Module, inputs: tuple, output: object) -> Tensor | None:
        if not isinstance(output, Tensor) or (require_maps and output.ndim != 4):
            got = f"shape {tuple(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"target layer {type(module).__name__} must output one (B,K,h,w) tensor "
                f"(or pass a reshape_transform), got {got}"
            )
        if not track_grad:
            # A copy, so that an in-place op after the layer cannot alter it.
            captured.append(output.detach().clone())
            return None
        # The outer no_grad context restores the caller's grad mode on exit.
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_()
        captured.append(leaf)
        # The clone keeps in-place ops downstream (e.g. ReLU(inplace=True)) off the leaf.
        return leaf.clone()

    handle = target_layer.register_forward_hook(capture)
    try:
        with torch.inference_mode(False), torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()

    if len(captured) != 1:
        raise ValueError(
            f"target layer {type(target_layer).__name__} ran {len(captured)} times in one "
            "forward pass; expected exactly once (is it a submodule of the model?)"
        )
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError("the model must return logits of shape (B, num_classes)")
    if track_grad and not logits.requires_grad:
        raise ValueError(f"the model's logits do not depend on target layer {type(target_layer).__name__}")
    return logits, captured[0]
