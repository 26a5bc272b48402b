"""The F-CAM inference copy (BatchNorm folded, channels_last on the CPU): same outputs as the
model in eval mode, and the model itself (training, state_dict) untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcam.models import build_classifier, build_fcam, inference_copy
from fcam.models.inference import fold_batchnorm


@pytest.fixture(scope="module")
def model():
    """A ResNet18 F-CAM whose decoder BatchNorms have non-trivial statistics and affine terms."""
    torch.manual_seed(0)
    fcam = build_fcam(build_classifier("resnet18", 4))
    generator = torch.Generator().manual_seed(1)
    for module in fcam.decoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.05)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return fcam.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_copy_gives_the_same_outputs(model, channels_last: bool) -> None:
    x = torch.randn(3, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)
    got = inference_copy(model, channels_last=channels_last)(x)
    assert got["seg_logits"].shape == expected["seg_logits"].shape
    assert expected["seg_logits"].abs().amax() > 1.0
    assert (got["seg_logits"] - expected["seg_logits"]).abs().amax() <= 1e-4
    torch.testing.assert_close(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)


def test_folding_leaves_the_model_and_its_checkpoint_unchanged(model) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.decoder.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules()) > 0
    state = model.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)
    assert all(v.is_contiguous() for v in state.values())
    assert all(p.requires_grad for p in model.decoder.parameters())
    with pytest.raises(ValueError, match="eval-only"):
        fast.train()


def test_fold_batchnorm_keeps_a_conv_with_bias_and_train_mode_bn_alone() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=True), nn.BatchNorm2d(5), nn.ReLU())
    block[1].running_mean.uniform_(-1, 1)
    block[1].running_var.uniform_(0.5, 2)
    block.train()
    folded = fold_batchnorm(block)
    assert block.training and isinstance(block[1], nn.BatchNorm2d)
    assert isinstance(folded[1], nn.Identity) and not folded.training
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), block.eval()(x), atol=1e-5, rtol=1e-5)
