"""Otsu threshold, seed regions, seed sampling and the partial cross-entropy."""

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.transform
import torch
from skimage.filters import threshold_otsu

from fcam.errors import FcamError
from fcam.losses import IGNORE_INDEX, SeedSampler, otsu_threshold, partial_cross_entropy


def _random_maps(rng: np.random.Generator, count: int, size: int) -> list[np.ndarray]:
    maps = []
    for i in range(count):
        kind = i % 5
        if kind == 0:  # full range noise
            maps.append(rng.integers(0, 256, (size, size)))
        elif kind == 1:  # few levels, sparse over 0..255
            levels = rng.choice(256, size=rng.integers(2, 5), replace=False)
            maps.append(rng.choice(levels, size=(size, size)))
        elif kind == 2:  # narrow range
            low = rng.integers(0, 250)
            maps.append(rng.integers(low, low + 6, (size, size)))
        elif kind == 3:  # smooth blob, like a CAM
            y, x = np.mgrid[:size, :size]
            cy, cx = rng.uniform(0, size, 2)
            blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * rng.uniform(2, size) ** 2))
            maps.append(np.floor(blob / blob.max() * 255))
        else:  # bimodal with ties
            maps.append(np.where(rng.random((size, size)) < rng.uniform(0.05, 0.95), 30, 200) + rng.integers(0, 3, (size, size)))
    return [m.astype(np.uint8) for m in maps]


def _photo_maps(size: int) -> list[np.ndarray]:
    maps = []
    for name in ("camera", "coins", "moon", "page", "text", "horse", "astronaut", "coffee"):
        image = getattr(skimage.data, name)()
        if image.ndim == 3:
            image = image[..., 0]
        resized = skimage.transform.resize(image, (size, size), preserve_range=True, anti_aliasing=False)
        maps.append(resized.astype(np.uint8))
    return maps


def test_otsu_matches_skimage_on_many_maps():
    rng = np.random.default_rng(0)
    maps = _random_maps(rng, 60, 24) + _photo_maps(24)
    maps += [np.full((24, 24), 0, np.uint8), np.full((24, 24), 137, np.uint8), np.full((24, 24), 255, np.uint8)]
    two = np.zeros((24, 24), np.uint8)
    two[3:9, 4:20] = 255
    maps.append(two)
    batch = torch.from_numpy(np.stack(maps))
    ours = otsu_threshold(batch)
    expected = [int(threshold_otsu(m)) for m in maps]
    assert ours.dtype == torch.int64
    assert ours.tolist() == expected


def test_otsu_rejects_float_maps():
    with pytest.raises(TypeError):
        otsu_threshold(torch.rand(2, 5, 5))


def _blob_cams(size: int = 40) -> torch.Tensor:
    """Two CAMs: a large bright disk, and a tiny bright spot that 11x11 erosion would remove."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((y - 20) ** 2 + (x - 18) ** 2 <= 10**2).float() * 0.8 + 0.1 * x.float() / size
    spot = torch.zeros(size, size)
    spot[5:8, 30:33] = 1.0
    spot = spot + 0.05 * y.float() / size
    return torch.stack((disk, spot)).clamp(0, 1)


def test_regions_follow_their_definitions():
    cams = _blob_cams()
    sampler = SeedSampler(bg_fraction=0.3)
    fg, bg = sampler.regions(cams)
    cams_u8 = np.floor(cams.numpy() * 255).astype(np.uint8)
    footprint = np.ones((11, 11), bool)
    for i in range(cams.shape[0]):
        threshold = min(max(int(threshold_otsu(cams_u8[i])), 1), 254)
        otsu_region = cams_u8[i] > threshold
        eroded = scipy.ndimage.binary_erosion(otsu_region, structure=footprint, border_value=1)
        expected = eroded if eroded.any() else otsu_region
        assert np.array_equal(fg[i].numpy(), expected)
        n_bg = int(0.3 * cams[i].numel())
        assert int(bg[i].sum()) == n_bg
        assert cams[i][bg[i]].max() <= cams[i][~bg[i]].min()
    # The disk survives erosion (and shrinks); the 3x3 spot would vanish, so it is kept whole.
    assert 0 < int(fg[0].sum()) < int((cams_u8[0] > threshold_otsu(cams_u8[0])).sum())
    assert int(fg[1].sum()) == 9


def test_a_constant_cam_gives_no_seeds():
    cams = torch.stack((torch.full((10, 10), 0.4), torch.linspace(0, 1, 100).reshape(10, 10)))
    sampler = SeedSampler(bg_fraction=0.5, erode_size=3)
    fg, bg = sampler.regions(cams)
    assert not fg[0].any() and not bg[0].any()
    assert fg[1].any() and int(bg[1].sum()) == 50
    labels = sampler(cams, torch.Generator().manual_seed(0))
    assert (labels[0] == IGNORE_INDEX).all()


def test_regions_reject_nan():
    cams = torch.rand(1, 8, 8)
    cams[0, 2, 2] = float("nan")
    with pytest.raises(ValueError):
        SeedSampler().regions(cams)


def test_centers_count_and_location():
    cams = _blob_cams()
    sampler = SeedSampler(n_seeds=10, bg_fraction=0.3)
    fg, bg = sampler.regions(cams)
    fg_centers, bg_centers = sampler.centers(cams, torch.Generator().manual_seed(3))
    assert fg_centers.flatten(1).sum(1).tolist() == [10, 9]  # the spot has only 9 pixels
    assert bg_centers.flatten(1).sum(1).tolist() == [10, 10]
    assert not (fg_centers & ~fg).any()
    assert not (bg_centers & ~bg).any()


def test_centers_are_uniform_over_the_region():
    cams = torch.zeros(1, 6, 6)
    cams[0, :, :3] = 1.0
    sampler = SeedSampler(n_seeds=1, bg_fraction=0.5, erode_size=1)
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(6, 6)
    for _ in range(1800):
        hits += sampler.centers(cams, generator)[0][0].float()
    region = hits[:, :3]
    assert (hits[:, 3:] == 0).all()
    assert region.min() > 100 * 0.7 and region.max() < 100 * 1.3  # 18 pixels, 100 expected each


def test_labels_are_dilated_centers_with_overlap_ignored():
    cams = _blob_cams()
    sampler = SeedSampler(n_seeds=40, bg_fraction=0.9, ksz=3)
    fg_centers, bg_centers = sampler.centers(cams, torch.Generator().manual_seed(5))
    labels = sampler(cams, torch.Generator().manual_seed(5))
    square = np.ones((3, 3), bool)
    overlaps = 0
    for i in range(cams.shape[0]):
        fg = scipy.ndimage.binary_dilation(fg_centers[i].numpy(), structure=square)
        bg = scipy.ndimage.binary_dilation(bg_centers[i].numpy(), structure=square)
        expected = np.full(fg.shape, IGNORE_INDEX)
        expected[bg & ~fg] = 0
        expected[fg & ~bg] = 1
        assert np.array_equal(labels[i].numpy(), expected)
        overlaps += int((fg & bg).sum())
    assert overlaps > 0  # the ignore rule was exercised
    assert labels.dtype == torch.int64


def test_labels_stay_near_their_regions():
    cams = _blob_cams()
    sampler = SeedSampler(n_seeds=20, bg_fraction=0.3, ksz=3)
    fg, bg = sampler.regions(cams)
    labels = sampler(cams, torch.Generator().manual_seed(1))
    square = np.ones((3, 3), bool)
    for i in range(cams.shape[0]):
        assert not ((labels[i] == 1).numpy() & ~scipy.ndimage.binary_dilation(fg[i].numpy(), square)).any()
        assert not ((labels[i] == 0).numpy() & ~scipy.ndimage.binary_dilation(bg[i].numpy(), square)).any()
    assert (labels == 1).any() and (labels == 0).any()


def test_sampling_is_deterministic_with_a_generator():
    cams = _blob_cams()
    sampler = SeedSampler()
    first = sampler(cams, torch.Generator().manual_seed(11))
    again = sampler(cams, torch.Generator().manual_seed(11))
    other = sampler(cams, torch.Generator().manual_seed(12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def _color_filter_reference(fg: np.ndarray, bg: np.ndarray, image: np.ndarray, ratio: float, bits: int) -> np.ndarray:
    """One image, in numpy: keep fg pixels whose colour frequency in fg exceeds ratio x its frequency in bg."""
    quant = image.astype(np.int64) >> (8 - bits)
    codes = (quant[0] << (2 * bits)) | (quant[1] << bits) | quant[2]
    p_fg = np.bincount(codes[fg], minlength=1 << (3 * bits)) / max(fg.sum(), 1)
    p_bg = np.bincount(codes[bg], minlength=1 << (3 * bits)) / max(bg.sum(), 1)
    kept = fg & (p_fg[codes] > ratio * p_bg[codes])
    return kept if kept.any() else fg


def test_color_filter_matches_a_numpy_reference():
    cams = _blob_cams()
    generator = torch.Generator().manual_seed(0)
    # Pixels of a random 6-colour palette, and one more colour on the left half of the disk: the
    # palette's colours in the foreground are dropped or kept depending on their frequencies there.
    palette = torch.randint(0, 256, (6, 3), generator=generator).float()
    images = palette[torch.randint(0, 6, (cams.shape[0], *cams.shape[1:]), generator=generator)].permute(0, 3, 1, 2)
    left_of_disk = (cams[0] > 0.5) & (torch.arange(cams.shape[2]) < 18)
    images[0, :, left_of_disk] = torch.tensor([250.0, 5.0, 5.0])[:, None]
    dropped = 0
    for ratio, bits in ((1.0, 3), (2.0, 3), (2.0, 5), (0.5, 2)):
        plain_fg, plain_bg = SeedSampler(erode_size=1, bg_fraction=0.3).regions(cams)
        fg, bg = SeedSampler(erode_size=1, bg_fraction=0.3, color_ratio=ratio, color_bits=bits).regions(cams, images)
        assert torch.equal(bg, plain_bg)
        for i in range(cams.shape[0]):
            expected = _color_filter_reference(plain_fg[i].numpy(), plain_bg[i].numpy(), images[i].numpy(), ratio, bits)
            assert np.array_equal(fg[i].numpy(), expected), (ratio, bits, i)
        dropped += int((plain_fg & ~fg).sum())
    assert dropped > 0


def test_color_filter_drops_background_coloured_foreground():
    # A red object (rows 10-19) on grey; the CAM's high region also spills 4 rows onto the grey.
    size = 32
    images = torch.full((1, 3, size, size), 120.0)
    images[0, 0, 10:20, 8:24], images[0, 1, 10:20, 8:24], images[0, 2, 10:20, 8:24] = 220.0, 30.0, 30.0
    cams = torch.zeros(1, size, size)
    cams[0, 6:20, 8:24] = 1.0
    cams[0] += torch.linspace(0, 0.01, size * size).reshape(size, size)  # no ties at the bottom
    plain, _ = SeedSampler(erode_size=1, bg_fraction=0.3).regions(cams)
    fg, _ = SeedSampler(erode_size=1, bg_fraction=0.3, color_ratio=2.0).regions(cams, images)
    assert plain[0, 6:10].any()                      # the spill is in the CAM's region
    assert not fg[0, 6:10].any()                     # and filtered out by its colour
    assert torch.equal(fg[0, 10:20, 8:24], plain[0, 10:20, 8:24])
    # Where every foreground pixel has the background's colour, the region is kept whole.
    grey = torch.full((1, 3, size, size), 120.0)
    kept, _ = SeedSampler(erode_size=1, bg_fraction=0.3, color_ratio=2.0).regions(cams, grey)
    assert torch.equal(kept, plain)


def test_color_filter_needs_the_images():
    sampler = SeedSampler(color_ratio=2.0)
    with pytest.raises(ValueError, match="colour filter"):
        sampler.regions(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="colour filter"):
        sampler.regions(torch.rand(2, 8, 8), torch.rand(2, 3, 4, 4))
    with pytest.raises(FcamError, match="color_ratio"):
        SeedSampler(color_ratio=-1.0)
    with pytest.raises(FcamError, match="color_bits"):
        SeedSampler(color_bits=0)


def test_partial_cross_entropy_is_the_mean_over_labelled_pixels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 5, 5, generator=generator, dtype=torch.float64)
    labels = torch.full((2, 5, 5), IGNORE_INDEX)
    labels[0, 1, 1], labels[0, 2, 3], labels[1, 4, 4] = 1, 0, 1
    log_probs = torch.log_softmax(logits, dim=1)
    expected = -(log_probs[0, 1, 1, 1] + log_probs[0, 0, 2, 3] + log_probs[1, 1, 4, 4]) / 3
    assert float(partial_cross_entropy(logits, labels)) == pytest.approx(float(expected), rel=1e-12)


def test_partial_cross_entropy_without_labels_is_zero_with_a_graph():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = partial_cross_entropy(logits, torch.full((1, 4, 4), IGNORE_INDEX))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert (logits.grad == 0).all()
