"""Dense CRF loss: exact backend against a brute-force sum, lattice against exact, gradients."""

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from fcam.errors import FcamError
from fcam.losses import IGNORE_INDEX, DenseCRFLoss, FCAMLoss, SizeConstraintLoss, partial_cross_entropy, permutohedral_filter
from fcam.losses.crf import exact_gaussian_filter, pixel_features
from fcam.losses.permutohedral import PermutohedralLattice

# The two implementations of the lattice: vectorised PyTorch (any device, any dtype) and the
# compiled hash table that permutohedral_filter runs for float32 on the CPU.
LATTICES = {
    "torch": lambda features, values: PermutohedralLattice(features).filter(values),
    "cpu": lambda features, values: permutohedral_filter(features, values.float()).to(values.dtype),
}

PHOTOS = ("astronaut", "coffee", "chelsea")


def _crop(name: str, size: int, top: int = 120, left: int = 150) -> torch.Tensor:
    """(1, 3, size, size) float crop of a skimage photograph, values 0..255."""
    image = getattr(skimage.data, name)()[top : top + size, left : left + size, :3]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()[None]


def _probs(batch: int, classes: int, size: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(batch, classes, size, size, generator=generator, dtype=dtype)
    return torch.softmax(logits, dim=1)


def _dense_kernel(image: np.ndarray, sigma_rgb: float, sigma_xy: float) -> np.ndarray:
    """W_ij = exp(-|f_i - f_j|^2 / 2) over (x, y, r, g, b) features of a (3, H, W) image, by brute force."""
    _, height, width = image.shape
    n = height * width
    kernel = np.empty((n, n))
    for i in range(n):
        yi, xi = divmod(i, width)
        for j in range(n):
            yj, xj = divmod(j, width)
            distance = ((xi - xj) ** 2 + (yi - yj) ** 2) / sigma_xy**2
            distance += float(((image[:, yi, xi] - image[:, yj, xj]) ** 2).sum()) / sigma_rgb**2
            kernel[i, j] = np.exp(-distance / 2)
    return kernel


def _brute_force_loss(images: torch.Tensor, probs: torch.Tensor, weight: float, sigma_rgb: float, sigma_xy: float) -> float:
    total = 0.0
    for image, prob in zip(images.numpy(), probs.detach().numpy()):
        kernel = _dense_kernel(image, sigma_rgb, sigma_xy)
        maps = prob.reshape(prob.shape[0], -1)
        total -= sum(float(s @ kernel @ s) for s in maps)
    return weight * total / images.shape[0]


@pytest.mark.parametrize("name,size", [("astronaut", 12), ("coffee", 14), ("chelsea", 16)])
def test_exact_backend_matches_brute_force(name, size):
    images = torch.cat((_crop(name, size), _crop(name, size, top=40, left=60)))
    probs = _probs(2, 2, size, seed=size)
    for sigma_rgb, sigma_xy in ((15.0, 100.0), (8.0, 3.0)):
        loss = DenseCRFLoss(weight=1e-3, sigma_rgb=sigma_rgb, sigma_xy=sigma_xy, backend="exact")
        expected = _brute_force_loss(images, probs, 1e-3, sigma_rgb, sigma_xy)
        assert float(loss(images, probs)) == pytest.approx(expected, rel=1e-10)


def test_exact_filter_tiles_agree_with_one_block():
    features = torch.randn(2, 300, 5, dtype=torch.float64)
    values = torch.rand(2, 300, 3, dtype=torch.float64)
    kernel = torch.exp(-0.5 * torch.cdist(features, features) ** 2)
    for tile in (300, 64, 37):
        torch.testing.assert_close(exact_gaussian_filter(features, values, tile=tile), kernel @ values)


@pytest.mark.parametrize("name", PHOTOS)
def test_lattice_is_close_to_the_exact_kernel_on_photos(name):
    size = 56
    images = _crop(name, size).float()
    # sigma_xy scaled with the crop, so the spatial extent matches 100 px on a 224 image.
    features = pixel_features(images, 15.0, 100.0 * size / 224)
    values = _probs(1, 2, size, seed=1, dtype=torch.float32).reshape(1, 2, -1).transpose(1, 2).contiguous()
    exact = exact_gaussian_filter(features.double(), values.double()).float()
    lattice = permutohedral_filter(features, values)
    cosine = F.cosine_similarity(exact.flatten(), lattice.flatten(), dim=0)
    scale = (lattice * exact).sum() / (exact * exact).sum()
    assert cosine >= 0.99
    assert 0.5 <= scale <= 0.7


def _scalar_lattice_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Point-by-point permutohedral filter with a dict for the hash table (Adams et al. 2010, as
    the reference C++): a plain second implementation to check the vectorised one against."""
    n, d = features.shape
    inv_std_dev = np.float64(np.float32(np.sqrt(2.0 / 3.0) * (d + 1)))
    table: dict[tuple[int, ...], int] = {}
    vertex_of = np.zeros((n, d + 1), dtype=np.int64)
    weight_of = np.zeros((n, d + 1))
    for p in range(n):
        elevated = np.zeros(d + 1, dtype=np.float32)
        running = np.float32(0.0)
        for j in range(d, 0, -1):
            coordinate = features[p, j - 1] * np.float32(inv_std_dev / np.sqrt((j + 1) * j))
            elevated[j] = running - np.float32(j) * coordinate
            running = np.float32(running + coordinate)
        elevated[0] = running
        rounded = np.round(elevated / np.float32(d + 1))
        rem0 = rounded * (d + 1)
        rank = [0] * (d + 1)
        for i in range(d):
            for j in range(i + 1, d + 1):
                if elevated[i] - rem0[i] < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d + 1):
            rank[i] += int(rounded.sum())
            if rank[i] < 0:
                rank[i], rem0[i] = rank[i] + d + 1, rem0[i] + d + 1
            elif rank[i] > d:
                rank[i], rem0[i] = rank[i] - d - 1, rem0[i] - d - 1
        barycentric = np.zeros(d + 2)
        for i in range(d + 1):
            v = (elevated[i] - rem0[i]) / (d + 1)
            barycentric[d - rank[i]] += v
            barycentric[d - rank[i] + 1] -= v
        barycentric[0] += 1.0 + barycentric[d + 1]
        for r in range(d + 1):
            key = tuple(int(rem0[i]) + (r if rank[i] <= d - r else r - d - 1) for i in range(d))
            vertex_of[p, r] = table.setdefault(key, len(table))
            weight_of[p, r] = barycentric[r]
    keys = list(table)
    lattice = np.zeros(len(keys))
    np.add.at(lattice, vertex_of.ravel(), (weight_of * values[:, None]).ravel())
    for j in range(d + 1):
        blurred = lattice.copy()
        for m, key in enumerate(keys):
            down = [k - 1 for k in key]
            up = [k + 1 for k in key]
            if j < d:
                down[j], up[j] = key[j] + d, key[j] - d
            for neighbour in (tuple(down), tuple(up)):
                if neighbour in table:
                    blurred[m] += 0.5 * lattice[table[neighbour]]
        lattice = blurred
    return (weight_of * lattice[vertex_of]).sum(1) / (1.0 + 2.0 ** (-d))


@pytest.mark.parametrize("lattice", LATTICES)
@pytest.mark.parametrize("d,integer", [(5, False), (5, True), (2, False), (3, True)])
def test_lattice_matches_a_scalar_implementation(d, integer, lattice):
    rng = np.random.default_rng(d)
    features = rng.normal(scale=1.5, size=(60, d))
    if integer:  # equal coordinates make rank ties, broken as in the reference
        features = np.round(features)
    features = features.astype(np.float32)
    values = rng.random(60)
    expected = _scalar_lattice_filter(features, values)
    ours = LATTICES[lattice](torch.from_numpy(features)[None], torch.from_numpy(values)[None, :, None])
    np.testing.assert_allclose(ours[0, :, 0].numpy(), expected, rtol=1e-5, atol=1e-7)


def test_cpu_lattice_agrees_with_the_vectorised_one_on_photos_and_noise():
    images = torch.cat([_crop(name, 48).float() for name in PHOTOS] + [torch.rand(1, 3, 48, 48) * 255])
    values = torch.softmax(torch.randn(4, 2, 48 * 48, generator=torch.Generator().manual_seed(0)), 1)
    values = values.transpose(1, 2).contiguous()
    for sigma_xy in (5.0, 27.0):
        features = pixel_features(images, 15.0, sigma_xy)
        torch.testing.assert_close(LATTICES["cpu"](features, values), LATTICES["torch"](features, values),
                                   rtol=1e-5, atol=1e-6)


def test_features_too_large_for_the_cpu_keys_go_to_the_vectorised_lattice():
    features = torch.rand(1, 30, 5) * 4e6
    with pytest.raises(FcamError, match="64 bits"):
        permutohedral_filter(features, torch.rand(1, 30, 1))


def test_lattice_filters_each_image_of_a_batch_on_its_own():
    images = torch.cat([_crop(name, 24).float() for name in PHOTOS])
    features = pixel_features(images, 15.0, 20.0)
    values = torch.rand(3, 24 * 24, 2)
    together = permutohedral_filter(features, values)
    alone = torch.cat([permutohedral_filter(features[i : i + 1], values[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_lattice_is_linear_in_the_values_and_channel_independent():
    images = _crop("coffee", 20).float()
    features = pixel_features(images, 15.0, 10.0)
    values = torch.rand(1, 400, 2, dtype=torch.float64)
    both = permutohedral_filter(features, values)
    first = permutohedral_filter(features, values[..., :1])
    scaled = permutohedral_filter(features, 3.0 * values + 1.0)
    ones = permutohedral_filter(features, torch.ones(1, 400, 1, dtype=torch.float64))
    torch.testing.assert_close(both[..., :1], first)
    torch.testing.assert_close(scaled, 3.0 * both + ones.expand_as(both))


def test_lattice_of_identical_points_spreads_the_total_mass():
    # All points on one feature: every W_ij = 1 exactly; the lattice returns a constant times the sum.
    features = torch.zeros(1, 50, 5)
    values = torch.rand(1, 50, 1)
    out = permutohedral_filter(features, values)
    torch.testing.assert_close(out, out[:, :1].expand_as(out))
    assert 0.3 * values.sum() < out[0, 0, 0] < 1.0 * values.sum()


def test_exact_backend_gradcheck():
    images = _crop("astronaut", 4)
    probs = _probs(1, 2, 4, seed=0).requires_grad_(True)
    loss = DenseCRFLoss(weight=1.0, sigma_rgb=20.0, sigma_xy=2.0, backend="exact")
    assert torch.autograd.gradcheck(lambda p: loss(images, p), (probs,))


@pytest.mark.parametrize("backend", ["exact", "permutohedral"])
def test_gradient_is_minus_two_weight_w_s_over_batch(backend):
    size, weight = 10, 0.01
    images = torch.cat([_crop(name, size) for name in PHOTOS[:2]])
    probs = _probs(2, 2, size, seed=3).requires_grad_(True)
    DenseCRFLoss(weight=weight, sigma_xy=7.0, backend=backend)(images, probs).backward()
    features = pixel_features(images, 15.0, 7.0)
    values = probs.detach().reshape(2, 2, -1).transpose(1, 2)
    if backend == "exact":
        kernel = torch.from_numpy(np.stack([_dense_kernel(image, 15.0, 7.0) for image in images.numpy()]))
        filtered = kernel @ values
    else:
        filtered = permutohedral_filter(features, values)
    expected = -2.0 * weight * filtered.transpose(1, 2).reshape(probs.shape) / 2
    torch.testing.assert_close(probs.grad, expected)


@pytest.mark.parametrize("backend", ["exact", "permutohedral"])
def test_batch_loss_is_the_mean_of_image_losses(backend):
    size = 20
    images = torch.cat([_crop(name, size).float() for name in PHOTOS])
    probs = _probs(3, 2, size, seed=4, dtype=torch.float32)
    loss = DenseCRFLoss(weight=1e-4, sigma_xy=10.0, backend=backend)
    per_image = sum(float(loss(images[i : i + 1], probs[i : i + 1])) for i in range(3))
    assert float(loss(images, probs)) == pytest.approx(per_image / 3, rel=1e-5)


def test_lattice_loss_tracks_the_exact_loss():
    size = 40
    images = torch.cat([_crop(name, size).float() for name in PHOTOS])
    probs = _probs(3, 2, size, seed=5, dtype=torch.float32)
    lattice = float(DenseCRFLoss(sigma_xy=18.0)(images, probs))
    exact = float(DenseCRFLoss(sigma_xy=18.0, backend="exact")(images, probs))
    assert 0.5 <= lattice / exact <= 0.7


def test_scale_factor_resizes_then_scales_sigma_xy():
    size, scale = 16, 0.5
    images = _crop("chelsea", size)
    probs = _probs(1, 2, size, seed=6).requires_grad_(True)
    loss = DenseCRFLoss(weight=1e-2, sigma_xy=12.0, scale_factor=scale, backend="exact")
    small_images = images[:, :, ::2, ::2]  # nearest at scale 1/2 keeps the even pixels
    small_probs = F.avg_pool2d(probs.detach(), 2)  # bilinear at 1/2 (no corner alignment) averages 2x2 cells
    expected = _brute_force_loss(small_images, small_probs, 1e-2, 15.0, 12.0 * scale)
    value = loss(images, probs)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-10)
    value.backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_reference_size_states_weight_and_sigma_at_that_side():
    size, reference = 16, 24
    images = _crop("chelsea", size)
    probs = _probs(1, 2, size, seed=7)
    side = size / reference
    expected = _brute_force_loss(images, probs, 1e-2 / side**4, 15.0, 12.0 * side)
    value = DenseCRFLoss(weight=1e-2, sigma_xy=12.0, reference_size=reference, backend="exact")(images, probs)
    assert float(value) == pytest.approx(expected, rel=1e-10)
    at_reference = DenseCRFLoss(weight=1e-2, sigma_xy=12.0, reference_size=size, backend="exact")(images, probs)
    plain = DenseCRFLoss(weight=1e-2, sigma_xy=12.0, backend="exact")(images, probs)
    assert float(at_reference) == float(plain)


def test_reference_size_makes_the_loss_independent_of_the_sampling():
    # The same scene at 16 and at 32 px (each pixel repeated 2x2): with a reference size the
    # loss barely moves; without one it grows with the number of pixel pairs (16x).
    images = _crop("chelsea", 16)
    probs = _probs(1, 2, 16, seed=8)
    fine_images = images.repeat_interleave(2, 2).repeat_interleave(2, 3)
    fine_probs = probs.repeat_interleave(2, 2).repeat_interleave(2, 3)
    scaled = DenseCRFLoss(weight=1e-2, sigma_xy=20.0, reference_size=16, backend="exact")
    plain = DenseCRFLoss(weight=1e-2, sigma_xy=20.0, backend="exact")
    assert float(scaled(fine_images, fine_probs)) / float(scaled(images, probs)) == pytest.approx(1.0, abs=0.05)
    assert float(plain(fine_images, fine_probs)) / float(plain(images, probs)) > 10


def test_bad_arguments_are_refused():
    with pytest.raises(FcamError):
        DenseCRFLoss(backend="gated")
    with pytest.raises(FcamError):
        DenseCRFLoss(sigma_rgb=0.0)
    with pytest.raises(FcamError):
        DenseCRFLoss(reference_size=-1)
    with pytest.raises(ValueError):
        DenseCRFLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 9))


def test_fcam_loss_sums_its_terms():
    size = 12
    images = _crop("astronaut", size).float()
    logits = torch.randn(1, 2, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.full((1, size, size), IGNORE_INDEX)
    labels[0, :3, :3], labels[0, -3:, -3:] = 0, 1
    crf, size_loss = DenseCRFLoss(weight=1e-6), SizeConstraintLoss()
    terms = FCAMLoss(alpha=2.0, crf=crf, size=size_loss)(logits, images, labels)
    terms["total"].backward()
    assert logits.grad.abs().sum() > 0

    fixed = logits.detach()
    probs = torch.softmax(fixed, dim=1)
    values = {name: float(term.detach()) for name, term in terms.items()}
    assert values["pce"] == pytest.approx(float(partial_cross_entropy(fixed, labels)))
    assert values["crf"] == pytest.approx(float(crf(images, probs)))
    assert values["size"] == pytest.approx(float(size_loss(probs)))
    assert values["total"] == pytest.approx(2.0 * values["pce"] + values["crf"] + values["size"])
    only_pce = FCAMLoss()(fixed, images, labels)
    assert float(only_pce["total"]) == pytest.approx(values["pce"])
    assert float(only_pce["crf"]) == 0.0 and float(only_pce["size"]) == 0.0


@pytest.mark.parametrize("backend", ["exact", "permutohedral"])
def test_cpu_bf16_autocast_leaves_loss_and_gradient_in_float32(backend):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 24, 20, generator=generator) * 255
    probs = torch.softmax(torch.randn(2, 2, 24, 20, generator=generator) * 3, dim=1)
    crf = DenseCRFLoss(weight=1e-3, sigma_rgb=15.0, sigma_xy=5.0, backend=backend)
    size = SizeConstraintLoss(weight=0.1)

    def loss_and_grad(autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        leaf = probs.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = crf(images, leaf) + size(leaf)
        loss.backward()
        return loss.detach(), leaf.grad

    expected_loss, expected_grad = loss_and_grad(False)
    loss, grad = loss_and_grad(True)
    assert loss.dtype == grad.dtype == torch.float32
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-9)
    # Half-precision maps (as autocast hands them over) are promoted: the loss is float32.
    half = probs.to(torch.bfloat16)
    assert crf(images, half).dtype == size(half).dtype == torch.float32
    assert float(size(half)) == pytest.approx(float(size(half.float())), rel=1e-6)
