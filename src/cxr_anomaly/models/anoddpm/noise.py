"""Multi-octave 3D simplex noise in torch, for AnoDDPM (Wyatt et al., CVPR Workshops 2022).

AnoDDPM corrupts images with fractal simplex noise instead of Gaussian noise. Its reference code
(``simplex.py``) ports the ``opensimplex`` package (Kurt Spencer's original OpenSimplex, 3D) and
builds fields with ``rand_3d_fixed_T_octaves``::

    for each octave: noise += amplitude * noise3array(x / frequency, y / frequency, T / frequency)
                     frequency /= 2; amplitude *= persistence

with pixel indices ``x`` (columns), ``y`` (rows), the diffusion timestep ``T`` and, for its
simplex runs, 6 octaves, persistence 0.8 and frequency 64 (pixels per noise unit, coarsest
octave). Its output is not rescaled.

OpenSimplex3D. :class:`OpenSimplex3D` reproduces ``opensimplex.OpenSimplex(seed).noise3`` in
vectorised torch on any device: same permutation from the seed (the package's 64-bit LCG
shuffle), same 24 gradients, stretch/squish constants and normalisation (103), and the *same
choice of lattice vertices*. That last point matters: the package sums ``attn**4 * dot(grad, d)``
over the 6 or 8 vertices its region branches pick, and those branches sometimes leave out a
vertex whose attenuation ``2 - |d|**2`` is still slightly positive (original OpenSimplex has
small discontinuities), so summing over *all* vertices with ``attn > 0`` differs from the package
by up to ~1e-4 (7e-5 seen on random points). Here the 8 corners of the point's stretched cell are
masked to the simplex that holds it, and the package's 2 "extra" vertices come from a table
indexed by the 16 comparisons its branches make (transcribed branch by branch), so float64
results agree with the package to ~1e-15.

Per-field randomness (the design choice). Every (image, channel) field gets its own OpenSimplex
seed (hence its own permutation table, exactly as ``opensimplex.OpenSimplex(seed)`` builds it)
and its own random offset for every octave, uniform in ``[0, OFFSET_RANGE)**3`` noise units::

    field[n, c, i, j] = sum_k p**k * OpenSimplex(seed[n, c]).noise3(
        j / f_k + offset[n, c, k, 0], i / f_k + offset[n, c, k, 1], t[n] / f_k + offset[n, c, k, 2])

with ``f_k = frequency / 2**k`` and persistence ``p``. Own seeds make the fields of a batch
independent. The offsets make each field stationary (the pixel grid has no fixed place in the
lattice) and its octaves uncorrelated, as the variance normalisation below assumes: without them
every octave samples pixel (0, 0) at (0, 0, t / f_k), so at t = 0 all octaves take the same value
there. The reference repeats one field over the batch and has no offsets; it calls
``newSeed()`` for every batch, but that method's default seed argument is evaluated once, at
import, so a whole run uses a single permutation. Here all draws come from an explicit
``torch.Generator`` (:func:`draw_simplex_fields`) and :func:`simplex_noise_from_fields` is a
deterministic function of the drawn :class:`SimplexFields`, so an image's noise depends only on
its own draws, never on the other images of the batch; :func:`simplex_noise_per_image` draws each
image's fields from its own seed, which makes its noise independent of the batch it is in.

Unit variance. With uncorrelated octaves ``Var(sum) = SIMPLEX3D_STD**2 * sum_k p**(2k)``, where
:data:`SIMPLEX3D_STD` is the standard deviation of single-octave OpenSimplex 3D at a uniformly
random point, over random seeds: 0.31394 by Monte Carlo with this implementation (4096 seeds x
4096 uniform points in ``[0, 256)**3``, 16.8M samples, standard error 5e-5; one seed's own std
ranges over 0.304-0.325). ``normalise=True`` divides by :func:`octave_std` (0.5049 for the
default parameters), a fixed constant, never a per-field statistic; the result has mean ~0 and
standard deviation ~1 over fields and pixels.

Precision. :meth:`OpenSimplex3D.noise3` and float64 outputs compute everything in float64 (the
golden path). Other output dtypes run the per-vertex arithmetic in float32, but still locate the
point in the lattice, take the branch decisions and form its offset from the cell in float64, so
large coordinates lose nothing and results agree with float64 to ~1e-6.

Example:
    >>> import torch
    >>> x = torch.zeros(8, 1, 64, 64)
    >>> g = torch.Generator().manual_seed(0)
    >>> eps = simplex_noise_like(x, torch.full((8,), 250), g)
    >>> eps.shape
    torch.Size([8, 1, 64, 64])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "OFFSET_RANGE",
    "SIMPLEX3D_STD",
    "OpenSimplex3D",
    "SimplexFields",
    "SimplexParams",
    "draw_simplex_fields",
    "octave_std",
    "opensimplex_permutation",
    "simplex_noise_from_fields",
    "simplex_noise_like",
    "simplex_noise_per_image",
]

# --- OpenSimplex 3D constants (identical to the opensimplex package) ---------------------------
_STRETCH3 = -1.0 / 6.0  # (1 / sqrt(3 + 1) - 1) / 3
_SQUISH3 = 1.0 / 3.0  # (sqrt(3 + 1) - 1) / 3
_NORM3 = 103.0
_GRADIENTS3 = (
    (-11, 4, 4), (-4, 11, 4), (-4, 4, 11), (11, 4, 4), (4, 11, 4), (4, 4, 11),
    (-11, -4, 4), (-4, -11, 4), (-4, -4, 11), (11, -4, 4), (4, -11, 4), (4, -4, 11),
    (-11, 4, -4), (-4, 11, -4), (-4, 4, -11), (11, 4, -4), (4, 11, -4), (4, 4, -11),
    (-11, -4, -4), (-4, -11, -4), (-4, -4, -11), (11, -4, -4), (4, -11, -4), (4, -4, -11),
)  # fmt: skip
_LCG_MUL = 6364136223846793005
_LCG_INC = 1442695040888963407
_U64 = 1 << 64

#: Standard deviation of single-octave OpenSimplex 3D at a uniformly random point, over seeds.
SIMPLEX3D_STD = 0.3139
#: Per-octave offsets are drawn uniformly from ``[0, OFFSET_RANGE)`` in each noise coordinate.
OFFSET_RANGE = 256.0

# Every lattice lookup uses extended tables of width 1024 per field: entry i holds the value for
# i & 255, so the hash needs no masking once the vertex coordinates are shifted by +256.
_TABLE_WIDTH = 1024
_SHIFT = 256


@dataclass(frozen=True)
class SimplexParams:
    """Fractal simplex noise parameters (AnoDDPM reference values by default).

    Attributes:
        octaves: Number of octaves summed.
        persistence: Amplitude ratio between successive octaves.
        frequency: Length scale, in pixels per noise unit, of the first (coarsest) octave; each
            further octave halves it.
    """

    octaves: int = 6
    persistence: float = 0.8
    frequency: float = 64.0

    def __post_init__(self) -> None:
        if self.octaves < 1:
            raise ValueError(f"octaves must be >= 1, got {self.octaves}")
        if self.frequency <= 0:
            raise ValueError(f"frequency must be > 0, got {self.frequency}")


def octave_std(params: SimplexParams = SimplexParams()) -> float:
    """Standard deviation of the un-normalised octave sum, assuming independent octaves.

    Args:
        params: Noise parameters.

    Returns:
        ``SIMPLEX3D_STD * sqrt(sum_k persistence**(2k))``.
    """
    p2 = params.persistence**2
    return SIMPLEX3D_STD * math.sqrt(sum(p2**k for k in range(params.octaves)))


# --- permutation tables -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _lcg_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """LCG states 4..259 as affine maps of the seed: ``state_k = a_k * seed + c_k (mod 2**64)``."""
    a, c = 1, 0
    mul, inc = [], []
    for _ in range(3 + 256):
        a = (a * _LCG_MUL) % _U64
        c = (c * _LCG_MUL + _LCG_INC) % _U64
        mul.append(a)
        inc.append(c)
    return np.array(mul[3:], dtype=np.uint64), np.array(inc[3:], dtype=np.uint64)


def opensimplex_permutation(seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Permutation tables of ``opensimplex`` (its ``_init``) for many integer seeds at once.

    Args:
        seeds: Integer seeds (any Python ints; taken modulo 2**64 like the package's int64 math).

    Returns:
        CPU int64 tensor ``(len(seeds), 256)``; row i equals ``opensimplex.OpenSimplex(seeds[i])``'s
        ``_perm``.
    """
    if isinstance(seeds, torch.Tensor):
        seeds = [int(s) for s in seeds.reshape(-1).tolist()]
    mul, inc = _lcg_coefficients()
    seed_u = np.array([int(s) % _U64 for s in seeds], dtype=np.uint64)
    with np.errstate(over="ignore"):
        states = (seed_u[:, None] * mul[None, :] + inc[None, :]).view(np.int64)
    modulus = np.arange(256, 0, -1, dtype=np.int64)  # i + 1 for i = 255 .. 0
    # (state + 31) % (i + 1) with Python semantics, without overflowing int64.
    picks = (np.mod(states, modulus) + 31) % modulus
    n = len(seed_u)
    rows = np.arange(n)
    source = np.tile(np.arange(256, dtype=np.int64), (n, 1))
    perm = np.zeros((n, 256), dtype=np.int64)
    for j, i in enumerate(range(255, -1, -1)):
        r = picks[:, j]
        perm[:, i] = source[rows, r]
        source[rows, r] = source[:, i]
    return torch.from_numpy(perm)


@dataclass(frozen=True)
class _FieldTables:
    """Extended per-field lookup tables, flattened over fields (entry ``field * 1024 + i``).

    Attributes:
        perm: int32 ``(F * 1024,)``, ``perm[i & 255]``: the first two hash levels.
        grad: ``(3, F * 1024)``, the gradient ``GRADIENTS3[perm_grad_index3[i & 255]]``: the last
            hash level and the gradient lookup in one.
    """

    perm: torch.Tensor
    grad: torch.Tensor


def _field_tables(perm: torch.Tensor, device: torch.device, dtype: torch.dtype) -> _FieldTables:
    """Builds the extended hash and gradient tables for permutation tables ``perm (F, 256)``."""
    ext = perm[:, torch.arange(_TABLE_WIDTH) & 255].reshape(-1)
    grad = torch.tensor(_GRADIENTS3, dtype=dtype)[ext % len(_GRADIENTS3)].T
    return _FieldTables(
        ext.to(device=device, dtype=torch.int32), grad.to(device=device).contiguous()
    )


# --- vertex selection (the package's region logic, transcribed into lookup tables) -------------
#
# The package sums over the vertices of the simplex holding the point (inside the stretched unit
# cell: the (0,0,0) tetrahedron if in_sum <= 1, the (1,1,1) tetrahedron if in_sum >= 2, else the
# octahedron), plus 2 "extra" vertices chosen by nested branches on the position (xi, yi, zi) in
# the cell. Here the simplex vertices are the 8 cell corners masked by region, and every branch
# depends only on the outcome of the 16 comparisons computed in `_region_key`, so a 16-bit key
# indexes a table of extra-vertex pairs. Comparisons are made on the same float64 values as the
# package, so ties resolve identically.

_BITS = (
    "gxy", "gyx", "gzy", "gyz", "gzx", "gxz", "near0", "near1",
    "a_far", "b_far", "c_far", "a_first", "a_lt", "b_lt", "low", "high",
)  # fmt: skip
_Vertex = tuple[int, int, int]


def _ext_low(branch: int, c: int) -> tuple[_Vertex, _Vertex]:
    """Extra vertices inside the (0,0,0) tetrahedron (branch 0: (0,0,0) among closest two)."""
    if branch == 0:
        x0, x1 = (-1, 0) if c & 1 == 0 else (1, 1)
        if c & 2 == 0:
            y0 = y1 = 0
            if c & 1 == 0:
                y1 -= 1
            else:
                y0 -= 1
        else:
            y0 = y1 = 1
        z0, z1 = (0, -1) if c & 4 == 0 else (1, 1)
    else:
        x0, x1 = (0, -1) if c & 1 == 0 else (1, 1)
        y0, y1 = (0, -1) if c & 2 == 0 else (1, 1)
        z0, z1 = (0, -1) if c & 4 == 0 else (1, 1)
    return (x0, y0, z0), (x1, y1, z1)


def _ext_high(branch: int, c: int) -> tuple[_Vertex, _Vertex]:
    """Extra vertices inside the (1,1,1) tetrahedron (branch 0: (1,1,1) among closest two)."""
    if branch == 0:
        x0, x1 = (2, 1) if c & 1 else (0, 0)
        if c & 2:
            y0 = y1 = 1
            if c & 1:
                y1 += 1
            else:
                y0 += 1
        else:
            y0 = y1 = 0
        z0, z1 = (1, 2) if c & 4 else (0, 0)
    else:
        x0, x1 = (1, 2) if c & 1 else (0, 0)
        y0, y1 = (1, 2) if c & 2 else (0, 0)
        z0, z1 = (1, 2) if c & 4 else (0, 0)
    return (x0, y0, z0), (x1, y1, z1)


def _ext_mid(a_far: bool, b_far: bool, a: int, b: int) -> tuple[_Vertex, _Vertex]:
    """Extra vertices inside the octahedron, from its two closest vertices ``a`` and ``b``."""

    def one_minus(c: int) -> _Vertex:  # a permutation of (1, 1, -1)
        if c & 1 == 0:
            return (-1, 1, 1)
        return (1, -1, 1) if c & 2 == 0 else (1, 1, -1)

    def two(c: int) -> _Vertex:  # a permutation of (2, 0, 0)
        if c & 1:
            return (2, 0, 0)
        return (0, 2, 0) if c & 2 else (0, 0, 2)

    if a_far == b_far:
        if a_far:
            return (1, 1, 1), two(a & b)
        return (0, 0, 0), one_minus(a | b)
    c1, c2 = (a, b) if a_far else (b, a)
    return one_minus(c1), two(c2)


def _key_to_ext(key: int) -> tuple[_Vertex, _Vertex]:
    """The package's 2 extra vertices for a point whose comparisons give ``key``."""
    bit = {name: bool(key >> i & 1) for i, name in enumerate(_BITS)}
    if bit["low"]:  # in_sum <= 1: tetrahedron at (0,0,0)
        x_ge_y = not bit["gyx"]
        b_is_z = x_ge_y and bit["gzy"]
        a_is_z = not x_ge_y and bit["gzx"]
        a, b = (4 if a_is_z else 1), (4 if b_is_z else 2)
        b_wins = bit["gzx"] if b_is_z else (bit["gyz"] if a_is_z else bit["gyx"])
        if bit["near0"]:  # wins > median: (0,0,0) is one of the closest two
            return _ext_low(0, b if b_wins else a)
        return _ext_low(1, a | b)
    if bit["high"]:  # in_sum >= 2: tetrahedron at (1,1,1)
        x_le_y = not bit["gxy"]
        b_is_z = x_le_y and bit["gyz"]
        a_is_z = not x_le_y and bit["gxz"]
        a, b = (3 if a_is_z else 6), (3 if b_is_z else 5)
        b_wins = bit["gxz"] if b_is_z else (bit["gzy"] if a_is_z else bit["gxy"])
        if bit["near1"]:  # wins < median: (1,1,1) is one of the closest two
            return _ext_high(0, b if b_wins else a)
        return _ext_high(1, a & b)
    # Octahedron in between.
    a_far, b_far, c_far = bit["a_far"], bit["b_far"], bit["c_far"]
    a, b, c = (3 if a_far else 4), (5 if b_far else 2), (6 if c_far else 1)
    if bit["a_first"] and bit["a_lt"]:
        a, a_far = c, c_far
    elif not bit["a_first"] and bit["b_lt"]:
        b, b_far = c, c_far
    return _ext_mid(a_far, b_far, a, b)


# Cell corners, index 4 * ox + 2 * oy + oz, and which region keeps each one: 0 = only the
# (0,0,0) tetrahedron, 1 = not the (1,1,1) tetrahedron, 2 = not the (0,0,0) one, 3 = only (1,1,1).
_CORNERS = tuple((k >> 2 & 1, k >> 1 & 1, k & 1) for k in range(8))
_CORNER_MASK_ROWS = (0, 1, 1, 2, 1, 2, 2, 3)


@functools.lru_cache(maxsize=1)
def _ext_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``key -> row`` int32 ``(65536,)`` and the distinct extra-vertex pairs ``(R, 2, 3)``."""
    rows: dict[tuple[_Vertex, _Vertex], int] = {}
    key_to_row = [rows.setdefault(_key_to_ext(k), len(rows)) for k in range(1 << len(_BITS))]
    return torch.tensor(key_to_row, dtype=torch.int32), torch.tensor(list(rows), dtype=torch.int64)


def _unskew(offsets: torch.Tensor) -> torch.Tensor:
    """Real-space position of lattice offsets ``(..., 3)``: ``o + sum(o) * SQUISH``."""
    o = offsets.double()
    return o + o.sum(-1, keepdim=True) * _SQUISH3


@dataclass(frozen=True)
class _SelectionTables:
    """Vertex selection tables on one device.

    Attributes:
        key_to_row: int32 ``(65536,)``: the extra-vertex pair of every comparison key.
        ext_ints: ``(6, R)``: x, y, z integer offsets of the pair (rows x0 x1 y0 y1 z0 z1), as
            float32 because CPU ``index_select`` along dim 1 is much faster for floats.
        ext_disp: ``(6, R)``: the same offsets unskewed to real space.
        corner_ints: int32 ``(2, 1)``: the offsets 0 and 1, for hashing the corners.
        corner_disp: ``(3, 8, 1)``: unskewed corner offsets.
    """

    key_to_row: torch.Tensor
    ext_ints: torch.Tensor
    ext_disp: torch.Tensor
    corner_ints: torch.Tensor
    corner_disp: torch.Tensor


@functools.lru_cache(maxsize=16)
def _selection_tables(device: torch.device, dtype: torch.dtype) -> _SelectionTables:
    key_to_row, ext = _ext_table()
    corners = torch.tensor(_CORNERS)
    return _SelectionTables(
        key_to_row=key_to_row.to(device),
        ext_ints=ext.permute(2, 1, 0).reshape(6, -1).to(device=device, dtype=torch.float32),
        ext_disp=_unskew(ext).permute(2, 1, 0).reshape(6, -1).to(device=device, dtype=dtype),
        corner_ints=torch.tensor([[0], [1]], dtype=torch.int32, device=device),
        corner_disp=_unskew(corners).T[..., None].to(device=device, dtype=dtype),
    )


def _region_key(
    xi: torch.Tensor, yi: torch.Tensor, zi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 16 comparisons that decide the package's branches, packed into an int32 key.

    Values are formed exactly as in the package (float64, same operation order): e.g. the
    package's ``wins > a_score or wins > b_score`` is ``wins > median(xi, yi, zi)`` because its
    two scores are the two largest of the three, and ``1 - p`` equals ``-(p - 1)`` exactly.

    Returns:
        The key, and the masks ``in_sum <= 1`` and ``in_sum >= 2``.
    """
    in_sum = xi + yi + zi
    med = torch.maximum(torch.minimum(xi, yi), torch.minimum(torch.maximum(xi, yi), zi))
    p1, p2, p3 = xi + yi, xi + zi, yi + zi
    a_sc, b_sc, c_sc = (p1 - 1).abs(), (p2 - 1).abs(), (p3 - 1).abs()
    low, high = in_sum <= 1, in_sum >= 2
    bits = (
        xi > yi, yi > xi, zi > yi, yi > zi, zi > xi, xi > zi,
        (1 - in_sum) > med, (3 - in_sum) < med,
        p1 > 1, p2 > 1, p3 > 1, a_sc <= b_sc, a_sc < c_sc, b_sc < c_sc,
        low, high,
    )  # fmt: skip
    key = bits[0].to(torch.int32)
    for i, b in enumerate(bits[1:], start=1):
        key.add_(b, alpha=1 << i)
    return key, low, high


def _attenuation(dx: torch.Tensor, dy: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """``max(2 - |d|^2, 0)`` for displacements ``d`` from vertices."""
    attn = 2 - dx * dx
    return attn.addcmul_(dy, dy, value=-1).addcmul_(dz, dz, value=-1).clamp_min_(0)


def _contributions(
    attn: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, dz: torch.Tensor, grad: torch.Tensor
) -> torch.Tensor:
    """Sum over vertices (dim 0) of ``attn**4 * dot(grad, d)``; overwrites ``attn``."""
    attn.mul_(attn)
    attn.mul_(attn)
    dot = grad[0] * dx
    dot.addcmul_(grad[1], dy).addcmul_(grad[2], dz)
    return (attn.mul_(dot)).sum(0)


def _noise3_core(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    field: torch.Tensor,
    tables: _FieldTables,
    dtype: torch.dtype,
) -> torch.Tensor:
    """OpenSimplex 3D for flat float64 coordinates ``(P,)`` of fields ``field`` (int32 ``(P,)``).

    Returns:
        ``(P,)`` noise values in ``dtype``: per-vertex arithmetic in ``dtype``, the location in
        the lattice and the branch decisions in float64.
    """
    sel = _selection_tables(x.device, dtype)
    n = x.shape[0]
    # Place the point on the simplectic honeycomb and find its rhombohedral cell.
    stretch = (x + y + z) * _STRETCH3
    xs, ys, zs = x + stretch, y + stretch, z + stretch
    xsb, ysb, zsb = torch.floor(xs), torch.floor(ys), torch.floor(zs)
    key, low, high = _region_key(xs - xsb, ys - ysb, zs - zsb)
    squish = (xsb + ysb + zsb) * _SQUISH3
    d0x = (x - (xsb + squish)).to(dtype)
    d0y = (y - (ysb + squish)).to(dtype)
    d0z = (z - (zsb + squish)).to(dtype)
    # Hash perm[(perm[(perm[X & 255] + Y) & 255] + Z) & 255] on the extended tables.
    base = field * _TABLE_WIDTH + _SHIFT
    hx = (xsb.long() & 255).to(torch.int32).add_(base)
    hy = (ysb.long() & 255).to(torch.int32).add_(base)
    hz = (zsb.long() & 255).to(torch.int32).add_(base)

    # The 8 cell corners: offsets 0/1 per axis, sharing the first two hash levels.
    one = sel.corner_ints
    h = tables.perm.index_select(0, (hx + one).view(-1)).view(2, 1, n)
    h = tables.perm.index_select(0, (h + (hy + one)).view(-1)).view(4, 1, n)
    grad = tables.grad.index_select(1, (h + (hz + one)).view(-1)).view(3, 8, n)
    cd = sel.corner_disp
    dx, dy, dz = d0x - cd[0], d0y - cd[1], d0z - cd[2]
    attn = _attenuation(dx, dy, dz)
    masks = [m.to(dtype) for m in (low, ~high, ~low, high)]
    for k, r in enumerate(_CORNER_MASK_ROWS):  # keep the corners of the point's simplex
        attn[k].mul_(masks[r])
    value = _contributions(attn, dx, dy, dz, grad)

    # The 2 extra vertices chosen by the package's branches.
    row = sel.key_to_row.index_select(0, key)
    eo = sel.ext_ints.index_select(1, row).to(torch.int32).view(3, 2, n)
    ed = sel.ext_disp.index_select(1, row).view(3, 2, n)
    h = tables.perm.index_select(0, (hx + eo[0]).view(-1)).view(2, n)
    h = tables.perm.index_select(0, h.add_(hy).add_(eo[1]).view(-1)).view(2, n)
    grad = tables.grad.index_select(1, h.add_(hz).add_(eo[2]).view(-1)).view(3, 2, n)
    dx, dy, dz = d0x - ed[0], d0y - ed[1], d0z - ed[2]
    value += _contributions(_attenuation(dx, dy, dz), dx, dy, dz, grad)
    return value / _NORM3


def _chunked_noise3(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    field: torch.Tensor,
    tables: _FieldTables,
    dtype: torch.dtype,
    chunk: int,
) -> torch.Tensor:
    """Runs :func:`_noise3_core` over flat inputs in chunks of ``chunk`` points."""
    n = x.numel()
    if n <= chunk:
        return _noise3_core(x, y, z, field, tables, dtype)
    out = torch.empty(n, dtype=dtype, device=x.device)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        out[s:e] = _noise3_core(x[s:e], y[s:e], z[s:e], field[s:e], tables, dtype)
    return out


def _default_chunk(device: torch.device) -> int:
    # Small chunks keep CPU temporaries in cache; GPUs prefer few, large launches.
    return 1 << 16 if device.type == "cpu" else 1 << 21


class OpenSimplex3D:
    """Torch port of ``opensimplex.OpenSimplex(seed)``'s 3D noise for one integer seed.

    Args:
        seed: Integer seed, as for ``opensimplex.OpenSimplex(seed)``.
        device: Device holding the permutation tables and running the computation.

    Example:
        >>> import torch
        >>> noise = OpenSimplex3D(seed=3)
        >>> v = noise.noise3(torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.5]))
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.seed = int(seed)
        self.device = torch.device(device)
        self.perm = opensimplex_permutation([self.seed])[0]
        self._tables = _field_tables(self.perm[None], self.device, torch.float64)

    def noise3(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Noise at points ``(x, y, z)`` (broadcast together), computed in float64.

        Args:
            x: First coordinates.
            y: Second coordinates.
            z: Third coordinates.

        Returns:
            float64 tensor of the broadcast shape on this object's device, in about [-1, 1];
            equal to the package's ``noise3`` to float64 rounding.
        """
        bx, by, bz = torch.broadcast_tensors(
            *(torch.as_tensor(c, device=self.device).to(torch.float64) for c in (x, y, z))
        )
        fx, fy, fz = bx.reshape(-1), by.reshape(-1), bz.reshape(-1)
        field = torch.zeros_like(fx, dtype=torch.int32)
        chunk = _default_chunk(self.device)
        out = _chunked_noise3(fx, fy, fz, field, self._tables, torch.float64, chunk)
        return out.reshape(bx.shape)


# --- fractal fields -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SimplexFields:
    """The random draws that define a batch of noise fields, one per (image, channel).

    Attributes:
        seeds: int64 ``(N, C)``: the OpenSimplex seed of each field (on any device).
        offsets: float64 ``(N, C, octaves, 3)``: per-octave offsets in noise units (x, y, t).
    """

    seeds: torch.Tensor
    offsets: torch.Tensor

    @staticmethod
    def concat(parts: Sequence[SimplexFields]) -> SimplexFields:
        """Stacks fields drawn separately (e.g. one generator per image) along the batch axis."""
        seeds = torch.cat([p.seeds.to(parts[0].seeds.device) for p in parts])
        offsets = torch.cat([p.offsets.to(parts[0].offsets.device) for p in parts])
        return SimplexFields(seeds, offsets)


def draw_simplex_fields(
    num_images: int,
    channels: int,
    generator: torch.Generator,
    params: SimplexParams = SimplexParams(),
) -> SimplexFields:
    """Draws independent field seeds and per-octave offsets from ``generator``.

    Draws happen on the generator's device, seeds first, then offsets, and stay there (nothing
    waits for the device); the same generator state always gives the same fields.

    Args:
        num_images: Batch size N.
        channels: Channels C (one field per image and channel).
        generator: Source of all randomness.
        params: Noise parameters (for the number of octaves).

    Returns:
        The drawn :class:`SimplexFields`.
    """
    dev = generator.device
    seeds = torch.randint(
        0, 1 << 62, (num_images, channels), generator=generator, device=dev, dtype=torch.int64
    )
    offsets = torch.rand(
        (num_images, channels, params.octaves, 3),
        generator=generator,
        device=dev,
        dtype=torch.float64,
    )
    return SimplexFields(seeds, offsets * OFFSET_RANGE)


@dataclass(frozen=True)
class PreparedFields:
    """Fields with their lookup tables built on their device, to be evaluated many times.

    Rows are images: :meth:`rows` selects a run of them without copying anything.

    Attributes:
        tables: The fields' hash and gradient tables, ``N * C`` fields in row-major order.
        offsets: float64 ``(N, C, octaves, 3)`` on the tables' device.
    """

    tables: _FieldTables
    offsets: torch.Tensor

    def rows(self, start: int, stop: int) -> PreparedFields:
        """Images ``start`` to ``stop - 1``: views of the tables and offsets."""
        per_image = self.offsets.shape[1] * _TABLE_WIDTH
        first, last = start * per_image, stop * per_image
        tables = _FieldTables(self.tables.perm[first:last], self.tables.grad[:, first:last])
        return PreparedFields(tables, self.offsets[start:stop])


def prepare_fields(
    fields: SimplexFields, device: torch.device | str, dtype: torch.dtype = torch.float32
) -> PreparedFields:
    """Builds the fields' permutation tables (one host round trip for all of them) on ``device``.

    ``dtype`` is the noise's output type: float64 computes in float64, anything else in float32.
    """
    dev = torch.device(device)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    tables = _field_tables(opensimplex_permutation(fields.seeds), dev, compute)
    return PreparedFields(tables, fields.offsets.to(device=dev, dtype=torch.float64))


def simplex_noise_from_fields(
    fields: SimplexFields,
    t: torch.Tensor | int,
    size: tuple[int, int],
    params: SimplexParams = SimplexParams(),
    normalise: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Fractal OpenSimplex fields for given draws (deterministic).

    Args:
        fields: Per-field seeds and offsets, ``N`` images by ``C`` channels.
        t: Timestep per image ``(N,)`` (or one int for all), the third noise coordinate.
        size: Output ``(H, W)``.
        params: Noise parameters.
        normalise: Divide by :func:`octave_std` (unit variance); otherwise the raw octave sum,
            as in the AnoDDPM reference.
        dtype: Output dtype; float64 computes entirely in float64, anything else uses the
            float32 fast path.
        device: Output device (default: the offsets' device).
        chunk: Points per vectorised chunk (default: small on CPU, large on GPUs).

    Returns:
        ``(N, C, H, W)`` noise; ``out[n, c, i, j]`` is the octave sum at pixel row i, column j.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be floating point, got {dtype}")
    dev = torch.device(device) if device is not None else fields.offsets.device
    n, c = fields.seeds.shape
    if fields.offsets.shape != (n, c, params.octaves, 3):
        raise ValueError(
            f"offsets have shape {tuple(fields.offsets.shape)}, expected ({n}, {c}, "
            f"{params.octaves}, 3) for {params.octaves} octaves"
        )
    prepared = prepare_fields(fields, dev, dtype)
    return simplex_noise_from_prepared(prepared, t, size, params, normalise, dtype, chunk)


def simplex_noise_from_prepared(
    prepared: PreparedFields,
    t: torch.Tensor | int,
    size: tuple[int, int],
    params: SimplexParams = SimplexParams(),
    normalise: bool = True,
    dtype: torch.dtype = torch.float32,
    chunk: int | None = None,
) -> torch.Tensor:
    """:func:`simplex_noise_from_fields` of fields already prepared: device work only.

    The prepared tables fix the arithmetic's precision (see :func:`prepare_fields`).
    """
    offsets = prepared.offsets
    dev = offsets.device
    n, c = offsets.shape[:2]
    if offsets.shape[2] != params.octaves:
        raise ValueError(f"fields have {offsets.shape[2]} octaves, params {params.octaves}")
    h, w = size
    tables = prepared.tables
    compute = tables.grad.dtype
    tt = torch.as_tensor(t, device=dev).to(torch.float64).reshape(-1)
    if tt.numel() == 1:
        tt = tt.expand(n)
    if tt.numel() != n:
        raise ValueError(f"t must be an int or have N={n} elements, got {tt.numel()}")
    cols = torch.arange(w, device=dev, dtype=torch.float64)
    rows = torch.arange(h, device=dev, dtype=torch.float64)
    shape = (n, c, h, w)
    field = (
        torch.arange(n * c, device=dev, dtype=torch.int32)
        .view(n, c, 1, 1)
        .expand(shape)
        .reshape(-1)
    )
    chunk = chunk or _default_chunk(dev)

    out = torch.zeros(shape, dtype=compute, device=dev)
    frequency, amplitude = float(params.frequency), 1.0
    for k in range(params.octaves):
        off = offsets[:, :, k]
        px = (cols / frequency + off[..., 0, None, None]).expand(shape).reshape(-1)
        py = (rows[:, None] / frequency + off[..., 1, None, None]).expand(shape).reshape(-1)
        pz = ((tt / frequency)[:, None] + off[..., 2])[..., None, None].expand(shape).reshape(-1)
        layer = _chunked_noise3(px, py, pz, field, tables, compute, chunk)
        out.add_(layer.view(shape), alpha=amplitude)
        frequency /= 2
        amplitude *= params.persistence
    if normalise:
        out.div_(octave_std(params))
    return out.to(dtype)


def simplex_noise_like(
    x: torch.Tensor,
    t: torch.Tensor | int,
    generator: torch.Generator,
    params: SimplexParams = SimplexParams(),
    normalise: bool = True,
) -> torch.Tensor:
    """Fractal simplex noise shaped like ``x``: one independent field per image and channel.

    Args:
        x: Reference tensor ``(N, C, H, W)``; the output has its shape, dtype and device.
        t: Per-image timesteps ``(N,)`` or one int, used as the third coordinate (``t / f``).
        generator: Source of all randomness (see :func:`draw_simplex_fields`); may live on a
            different device than ``x``.
        params: Noise parameters (AnoDDPM defaults: 6 octaves, persistence 0.8, frequency 64).
        normalise: Scale to unit variance with the fixed constant :func:`octave_std`.

    Returns:
        Noise like ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must be floating point, got {x.dtype}")
    n, c, h, w = x.shape
    fields = draw_simplex_fields(n, c, generator, params)
    return simplex_noise_from_fields(
        fields, t, (h, w), params, normalise, dtype=x.dtype, device=x.device
    )


def simplex_noise_per_image(
    x: torch.Tensor,
    t: torch.Tensor | int,
    seeds: Sequence[int] | torch.Tensor,
    params: SimplexParams = SimplexParams(),
    normalise: bool = True,
) -> torch.Tensor:
    """Like :func:`simplex_noise_like`, but image i's fields come from its own seed ``seeds[i]``.

    Each image draws its fields from a fresh CPU generator seeded with its seed, so its noise is
    a function of (seed, t, shape) alone: it does not change with the batch it is in, its
    position in it, or the device.

    Args:
        x: Reference tensor ``(N, C, H, W)``; the output has its shape, dtype and device.
        t: Per-image timesteps ``(N,)`` or one int.
        seeds: One integer seed per image.
        params: Noise parameters.
        normalise: Scale to unit variance with the fixed constant :func:`octave_std`.

    Returns:
        Noise like ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    seed_list = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if len(seed_list) != n:
        raise ValueError(f"need one seed per image ({n}), got {len(seed_list)}")
    parts = [draw_simplex_fields(1, c, torch.Generator().manual_seed(s), params) for s in seed_list]
    fields = (
        SimplexFields.concat(parts)
        if parts
        else draw_simplex_fields(0, c, torch.Generator(), params)
    )
    return simplex_noise_from_fields(
        fields, t, (h, w), params, normalise, dtype=x.dtype, device=x.device
    )
