"""Permutohedral-lattice Gaussian filter (Adams, Baek and Davis, Eurographics 2010) in PyTorch.

This is the algorithm of the classic C++ implementation (Kraehenbuehl's dense CRF code, as
shipped with Tang et al.'s rloss, whose bilateral filter F-CAM's CRF loss calls): the same
elevation and scaling, the same simplex and barycentric weights, one blur pass of weights
(1/2, 1, 1/2) along each of the d+1 lattice directions in order, and the same final ``alpha``
constant. Keeping the algorithm keeps its output scale (about 0.6 of the exact kernel product on
photographs), which the CRF weight 2e-9 was tuned against.

Everything is vectorised: the images of a batch share one lattice whose keys carry the image index;
simplices, then their vertices, are deduplicated by sorting int64-encoded keys, and blur neighbours
are found by binary search of shifted codes. It runs on any device; on the CPU
:func:`permutohedral_filter` runs the same algorithm with a hash table instead
(:mod:`fcam.losses.permutohedral_cpu`), ~3x faster there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from fcam.errors import FcamError

__all__ = ["PermutohedralLattice", "permutohedral_filter"]

_MAX_CODE = 2**62
# Features (in standard deviations) beyond this would overflow the int32 keys of the CPU lattice.
_MAX_CPU_FEATURE = 2.0**20


class PermutohedralLattice:
    """The lattice of a batch of feature sets, built once and reusable for any values.

    ``features`` is (B, N, d); each image's points only ever meet the lattice vertices of the same
    image. Lattice construction is done in float32, as in the reference.
    """

    def __init__(self, features: Tensor) -> None:
        if features.dim() != 3:
            raise ValueError(f"permutohedral features must be (B, N, d), got shape {tuple(features.shape)}")
        batch, n_points, d = features.shape
        self.batch, self.n_points, self.d = batch, n_points, d
        device = features.device
        # Coordinate-major (d, P): the per-coordinate steps below are contiguous vector operations.
        points = features.detach().reshape(batch * n_points, d).to(torch.float32).T.contiguous()
        n_total = points.shape[1]

        # Elevate onto the hyperplane sum = 0 of R^(d+1) (E matrix, p.5 of Adams et al.), scaled so
        # that the blur below has the expected standard deviation (p.6). The scale factors are
        # rounded as in the reference's SSE build (float inverse deviation, double quotient, then
        # float): near-ties between coordinates, common on pixel grids, depend on the last bit.
        scales = elevation_scales(d)
        running = torch.zeros(n_total, device=device)
        tail = []
        for j in range(d, 0, -1):
            coordinate = points[j - 1] * scales[j - 1]
            tail.append(running - j * coordinate)
            running = running + coordinate
        elevated = torch.stack([running, *reversed(tail)])

        # Closest remainder-0 lattice point (divided by d+1), then the rank of each coordinate's
        # residual, with the reference's tie-breaking: rank_i = #{j > i: r_j > r_i} +
        # #{j < i: r_j >= r_i}. torch.round rounds halves to even, as the reference's SSE build.
        rounded = torch.round(elevated * (1.0 / (d + 1)))
        residual = elevated - rounded * (d + 1)
        later = torch.ones(d + 1, d + 1, dtype=torch.bool, device=device).triu(1)[:, :, None]
        below_later = (residual[:, None, :] < residual[None, :, :]) & later
        order = torch.arange(d + 1, device=device)[:, None]
        rank = below_later.sum(1) - below_later.sum(0) + order
        # A point off the plane (rounded coordinates not summing to 0) is brought back.
        rank += rounded.sum(0).long()
        wrap = (rank < 0).long() - (rank > d).long()
        rank += wrap * (d + 1)
        rounded += wrap

        # Barycentric weights of the d+1 enclosing simplex vertices (p.10), (d+1, P).
        residual = (elevated - rounded * (d + 1)) * (1.0 / (d + 1))
        barycentric = torch.zeros(d + 2, n_total, device=device)
        barycentric.scatter_add_(0, d - rank, residual)
        barycentric.scatter_add_(0, d - rank + 1, -residual)
        barycentric[0] += 1.0 + barycentric[d + 1]
        self.barycentric = barycentric[: d + 1]

        # Points in the same simplex (same remainder-0 vertex and coordinate ranks) share its d+1
        # vertices: deduplicate simplices first, then the vertices of the distinct simplices.
        base = rounded[:d].long()  # remainder-0 vertex / (d+1), stored coordinates
        image = torch.arange(batch, device=device).repeat_interleave(n_points)
        spans = _spans(base)
        simplex_codes = _encode(torch.cat((base, rank[:d])), spans + [d + 1] * d, image, batch)
        simplices, simplex_of_point = torch.unique(simplex_codes, sorted=False, return_inverse=True)
        example = torch.empty(simplices.numel(), dtype=torch.int64, device=device)
        example.scatter_(0, simplex_of_point, torch.arange(n_total, device=device))

        # Vertex r of a simplex, coordinate k < d (the last one is minus their sum):
        # (d+1) base_k + canonical simplex entry, r or r - (d+1) depending on rank_k.
        remainders = torch.arange(d + 1, device=device)
        wraps = (rank[:d, example, None] > d - remainders).long()
        keys = (d + 1) * base[:, example, None] + remainders - (d + 1) * wraps
        # Keys lie within d of (d+1) * base, neighbour keys within 2d: radices with that slack
        # encode neighbours without carries, so equal codes mean equal keys of the same image.
        key_radices = [(d + 1) * span + 4 * d for span in spans]
        key_images = image[example, None].expand(-1, d + 1).reshape(-1)
        codes = _encode(keys.reshape(d, -1), key_radices, key_images, batch)
        self.vertices, vertex_of_key = torch.unique(codes, sorted=True, return_inverse=True)
        self.n_vertices = int(self.vertices.numel())
        # Lattice vertex of each (remainder, point), (d+1) * P, remainder-major like the weights.
        self.offsets = vertex_of_key.reshape(-1, d + 1)[simplex_of_point].T.reshape(-1)

        # Neighbours along direction j: key - 1 + (d+1) e_j and key + 1 - (d+1) e_j; for j = d the
        # implicit last coordinate moves, i.e. only the -1 / +1 part applies to the stored ones.
        # The second relation is the inverse of the first, so only the first is searched for.
        n_vertices = self.n_vertices
        strides = _strides(key_radices)
        deltas = [-sum(strides) + (d + 1) * stride for stride in strides] + [-sum(strides)]
        queries = self.vertices + torch.tensor(deltas, device=device)[:, None]
        position = torch.searchsorted(self.vertices, queries).clamp_(max=n_vertices - 1)
        forward = torch.where(self.vertices[position] == queries, position, n_vertices)
        # Each direction gets n_vertices + 1 slots; the last one takes the writes of vertices
        # without a forward neighbour and is dropped.
        slots = forward + torch.arange(d + 1, device=device)[:, None] * (n_vertices + 1)
        backward = torch.full(((d + 1) * (n_vertices + 1),), n_vertices, device=device, dtype=torch.int64)
        backward.scatter_(0, slots.reshape(-1), torch.arange(n_vertices, device=device).repeat(d + 1))
        backward = backward.reshape(d + 1, n_vertices + 1)[:, :n_vertices]
        self.neighbours = list(zip(forward, backward))

    def filter(self, values: Tensor) -> Tensor:
        """Splat (B, N, C) values, blur along every lattice direction, slice back to (B, N, C)."""
        if values.shape[:2] != (self.batch, self.n_points):
            raise ValueError(
                f"permutohedral values must be ({self.batch}, {self.n_points}, C), got {tuple(values.shape)}"
            )
        channels = values.shape[2]
        d = self.d
        weights = self.barycentric.to(values.dtype)[:, :, None]
        flat = values.reshape(1, -1, channels)
        splatted = (flat * weights).reshape(-1, channels)
        # Row n_vertices stays 0: it stands for the missing neighbours.
        lattice = values.new_zeros(self.n_vertices + 1, channels)
        lattice.index_add_(0, self.offsets, splatted)
        spare = values.new_zeros(self.n_vertices + 1, channels)
        for n1, n2 in self.neighbours:
            sides = lattice.index_select(0, n1).add_(lattice.index_select(0, n2))
            torch.add(lattice[: self.n_vertices], sides, alpha=0.5, out=spare[: self.n_vertices])
            lattice, spare = spare, lattice
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        sliced = lattice.index_select(0, self.offsets).reshape(d + 1, -1, channels)
        out = (sliced * weights).sum(0) * alpha
        return out.reshape(self.batch, self.n_points, channels)


def _to_float32(value: float) -> float:
    """The float32 nearest to a Python float, as a Python float."""
    return torch.tensor(value, dtype=torch.float32).item()


def _spans(digits: Tensor) -> list[int]:
    """Number of integer values between the min and max of each row of (k, P) integer digits."""
    low, high = torch.aminmax(digits, dim=1)
    return [int(span) + 1 for span in (high - low).tolist()]


def _strides(radices: list[int]) -> list[int]:
    strides = [1] * len(radices)
    for k in range(len(radices) - 2, -1, -1):
        strides[k] = strides[k + 1] * radices[k + 1]
    return strides


def _encode(digits: Tensor, radices: list[int], image: Tensor, n_images: int) -> Tensor:
    """Mixed-radix int64 code of (image index, digits) per point, from (k, P) integer digits.

    The code is affine in the digits, so it is injective as long as each digit takes fewer
    distinct consecutive values than its radix; the digits need not start at 0.
    """
    strides = _strides(radices)
    image_stride = strides[0] * radices[0]
    if image_stride * n_images >= _MAX_CODE:
        raise FcamError(
            "permutohedral lattice keys do not fit in 64 bits: the features span too many standard "
            "deviations (use larger sigmas)"
        )
    weights = torch.tensor(strides, device=digits.device, dtype=torch.int64)[:, None]
    return image * image_stride + (digits * weights).sum(0)


def permutohedral_filter(features: Tensor, values: Tensor) -> Tensor:
    """Approximate Gaussian filter sum_j exp(-|f_i - f_j|^2 / 2) v_j per image, as the reference lattice.

    ``features`` (B, N, d) are already divided by their standard deviations; ``values`` (B, N, C).
    float32 values on the CPU go to the compiled hash-table lattice (:mod:`fcam.losses.permutohedral_cpu`,
    same algorithm, ~3x faster there); other devices and dtypes to :class:`PermutohedralLattice`.
    """
    if features.device.type == "cpu" and values.dtype == torch.float32 and values.device.type == "cpu":
        return _filter_on_cpu(features, values)
    return PermutohedralLattice(features).filter(values)


def elevation_scales(d: int) -> list[float]:
    """Factor of feature coordinate j (0-based) in the elevation: float32(inv_std_dev / sqrt((j+2)(j+1)))
    with inv_std_dev the float32 of sqrt(2/3) (d+1), rounded as the reference's SSE build."""
    inv_std_dev = _to_float32(math.sqrt(2.0 / 3.0) * (d + 1))
    return [_to_float32(inv_std_dev / math.sqrt((j + 1) * j)) for j in range(1, d + 1)]


def _filter_on_cpu(features: Tensor, values: Tensor) -> Tensor:
    from fcam.losses.permutohedral_cpu import filter_batch  # numba: imported by the processes that filter

    if features.dim() != 3 or values.shape[:2] != features.shape[:2]:
        raise ValueError(f"permutohedral features (B, N, d) and values (B, N, C) must agree, got "
                         f"{tuple(features.shape)} and {tuple(values.shape)}")
    scales = np.asarray(elevation_scales(features.shape[2]), dtype=np.float32)
    points = features.detach().to(torch.float32).contiguous().numpy()
    if points.size and not np.abs(points).max() < _MAX_CPU_FEATURE:  # int32 keys; NaN fails too
        return PermutohedralLattice(features).filter(values)
    filtered = filter_batch(points, values.detach().contiguous().numpy(), scales)
    return torch.from_numpy(filtered)
