"""Extended log-barrier and the absolute size constraint."""

import math

import pytest
import torch

from fcam.errors import FcamError
from fcam.losses import ExtendedLogBarrier, SizeConstraintLoss


def _psi(z: float, t: float) -> float:
    """The barrier as written in the paper (Kervadec et al.), evaluated with math."""
    if z <= -1.0 / t**2:
        return -math.log(-z) / t
    return t * z - math.log(1.0 / t**2) / t + 1.0 / t


def _slope(barrier: ExtendedLogBarrier, z: float) -> float:
    point = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    barrier(point).backward()
    return float(point.grad)


@pytest.mark.parametrize("t", [1.0, 2.0, 5.5])
@pytest.mark.parametrize("z", [-100.0, -3.0, -0.5, -0.05, 0.0, 0.3, 4.0])
def test_barrier_values(t, z):
    barrier = ExtendedLogBarrier(t_init=t)
    value = barrier(torch.tensor(z, dtype=torch.float64))
    assert float(value) == pytest.approx(_psi(z, t), rel=1e-12, abs=1e-12)


def test_barrier_known_points():
    barrier = ExtendedLogBarrier(t_init=1.0)
    assert float(barrier(torch.tensor(-math.e, dtype=torch.float64))) == pytest.approx(-1.0)
    assert float(barrier(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(1.5)


@pytest.mark.parametrize("t", [1.0, 3.0, 10.0])
def test_barrier_slopes_and_continuity(t):
    barrier = ExtendedLogBarrier(t_init=t)
    switch = -1.0 / t**2
    assert _slope(barrier, 2 * switch) == pytest.approx(-1.0 / (t * 2 * switch))
    assert _slope(barrier, 1.0) == pytest.approx(t)
    assert _slope(barrier, switch) == pytest.approx(t)
    eps = 1e-9
    left = float(barrier(torch.tensor(switch - eps, dtype=torch.float64)))
    right = float(barrier(torch.tensor(switch + eps, dtype=torch.float64)))
    assert left == pytest.approx(right, abs=1e-7)
    assert _slope(barrier, switch - eps) == pytest.approx(_slope(barrier, switch + eps), rel=1e-6)


def test_barrier_gradient_is_finite_on_both_branches():
    z = torch.tensor([-5.0, -1.0, 0.0, 2.0], requires_grad=True)
    ExtendedLogBarrier()(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_t_schedule_and_cap():
    barrier = ExtendedLogBarrier()
    assert barrier.t == 1.0
    for epoch in range(1, 300):
        barrier.step()
        assert barrier.t == pytest.approx(min(1.01**epoch, 10.0), rel=1e-9)
    assert barrier.t == 10.0


def test_state_dict_round_trip():
    barrier = ExtendedLogBarrier()
    for _ in range(7):
        barrier.step()
    restored = ExtendedLogBarrier()
    restored.load_state_dict(barrier.state_dict())
    assert restored.t == barrier.t == pytest.approx(1.01**7)
    restored.step()
    assert restored.t == pytest.approx(1.01**8)


def test_invalid_schedule_is_refused():
    with pytest.raises(FcamError):
        ExtendedLogBarrier(t_init=0.0)
    with pytest.raises(FcamError):
        ExtendedLogBarrier(t_mult=0.9)


def test_size_loss_on_hand_made_map():
    # Image 0: fg covers 6 of 16 pixels with prob 1; image 1: fg 0.25 everywhere (size 4).
    probs = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    probs[0, 1].view(-1)[:6] = 1.0
    probs[1, 1] = 0.25
    probs[:, 0] = 1.0 - probs[:, 1]
    sizes = {(0, 0): 10.0, (0, 1): 6.0, (1, 0): 12.0, (1, 1): 4.0}
    t = 1.0
    expected = 0.1 * 0.5 * sum(
        (_psi(-sizes[(0, r)], t) + _psi(-sizes[(1, r)], t)) / 2 for r in (0, 1)
    )
    loss = SizeConstraintLoss(weight=0.1)
    assert float(loss(probs)) == pytest.approx(expected, rel=1e-12)


def test_size_loss_on_an_empty_map_uses_the_linear_branch():
    probs = torch.zeros(1, 2, 3, 3)
    probs[:, 0] = 1.0
    loss = SizeConstraintLoss(weight=1.0)
    # bg: size 9 -> -(log 9); fg: size 0 -> linear branch at z = 0: 0 - log(1) + 1 = 1.
    assert float(loss(probs)) == pytest.approx(0.5 * (-math.log(9.0) + 1.0), rel=1e-6)


def test_size_loss_pushes_the_empty_map_up():
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 5.0
    logits.requires_grad_(True)
    SizeConstraintLoss()(torch.softmax(logits, dim=1)).backward()
    assert (logits.grad[:, 1] < 0).all()

