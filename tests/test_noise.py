"""Tests for the torch OpenSimplex 3D port and the fractal simplex noise of AnoDDPM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxr_anomaly.models.anoddpm.noise import (
    OpenSimplex3D,
    SimplexFields,
    SimplexParams,
    draw_simplex_fields,
    octave_std,
    opensimplex_permutation,
    simplex_noise_from_fields,
    simplex_noise_like,
    simplex_noise_per_image,
)

opensimplex = pytest.importorskip("opensimplex")

SEEDS = [0, 3, -77, 1234567890123, 2**63 + 5, -(2**63)]


def _golden_points() -> np.ndarray:
    """Coordinates that exercise every region, negative and large values, and exact ties."""
    rng = np.random.default_rng(20220610)
    return np.concatenate(
        [
            rng.uniform(-6.0, 6.0, (1200, 3)),
            rng.uniform(-1e4, 1e4, (200, 3)),
            rng.integers(-8, 8, (150, 3)) / np.array([1.0, 2.0, 3.0]),  # lattice-ish ties
            np.round(rng.uniform(-2.0, 2.0, (200, 3)), 1),
            rng.integers(-3, 4, (50, 3)).astype(float),  # integer points
        ]
    )


def _package_noise(seed: int, pts: np.ndarray) -> np.ndarray:
    noise = opensimplex.OpenSimplex(seed)
    return np.array([noise.noise3(float(a), float(b), float(c)) for a, b, c in pts])


@pytest.mark.parametrize("seed", SEEDS)
def test_permutation_matches_package(seed: int) -> None:
    expected = opensimplex.OpenSimplex(seed)._perm
    np.testing.assert_array_equal(OpenSimplex3D(seed).perm.numpy(), expected)


def test_batched_permutations_match_package() -> None:
    perms = opensimplex_permutation(torch.tensor([5, -5, 2**40]))
    for row, seed in zip(perms, [5, -5, 2**40], strict=True):
        np.testing.assert_array_equal(row.numpy(), opensimplex.OpenSimplex(seed)._perm)


@pytest.mark.parametrize("seed", [3, -77, 2**63 + 5])
def test_noise3_golden_values_match_package(seed: int) -> None:
    pts = _golden_points()
    expected = _package_noise(seed, pts)
    t = torch.from_numpy(pts)
    got = OpenSimplex3D(seed).noise3(t[:, 0], t[:, 1], t[:, 2])
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    # In float64 the port is exact up to rounding, not merely within the 1e-5 tolerance.
    assert np.abs(got.numpy() - expected).max() < 1e-12


def test_noise3_broadcasts_and_matches_noise3array() -> None:
    seed = 11
    x = np.linspace(-1.3, 2.9, 7)
    y = np.linspace(0.1, 3.4, 5)
    z = np.array([0.25, -4.5])
    expected = opensimplex.OpenSimplex(seed).noise3array(x, y, z)  # (z, y, x)
    got = OpenSimplex3D(seed).noise3(
        torch.from_numpy(x)[None, None, :],
        torch.from_numpy(y)[None, :, None],
        torch.from_numpy(z)[:, None, None],
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def _fields(seeds: list[list[int]], octaves: int, seed: int = 0) -> SimplexFields:
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.rand((len(seeds), len(seeds[0]), octaves, 3), generator=gen).double() * 256
    return SimplexFields(torch.tensor(seeds, dtype=torch.int64), offsets)


def _package_octaves(
    fields: SimplexFields, t: list[int], size: tuple[int, int], params: SimplexParams
) -> np.ndarray:
    """Direct octave sum with the opensimplex package, one field at a time."""
    n, c = fields.seeds.shape
    h, w = size
    out = np.zeros((n, c, h, w))
    for i in range(n):
        for j in range(c):
            noise = opensimplex.OpenSimplex(int(fields.seeds[i, j]))
            frequency, amplitude = params.frequency, 1.0
            for k in range(params.octaves):
                ox, oy, oz = fields.offsets[i, j, k].tolist()
                layer = noise.noise3array(
                    np.arange(w) / frequency + ox,
                    np.arange(h) / frequency + oy,
                    np.array([t[i] / frequency + oz]),
                )
                out[i, j] += amplitude * layer[0]
                frequency /= 2
                amplitude *= params.persistence
    return out


def test_single_octave_fast_path_matches_package() -> None:
    params = SimplexParams(octaves=1, frequency=4.0)
    fields = _fields([[17], [-4]], octaves=1)
    t = [300, 7]
    expected = _package_octaves(fields, t, (9, 11), params)
    fast = simplex_noise_from_fields(fields, torch.tensor(t), (9, 11), params, normalise=False)
    assert fast.dtype == torch.float32
    np.testing.assert_allclose(fast.numpy(), expected, rtol=0, atol=1e-5)


def test_octave_sum_matches_package() -> None:
    params = SimplexParams()  # 6 octaves, persistence 0.8, frequency 64
    fields = _fields([[101, 202], [303, 404]], octaves=params.octaves)
    t = [250, 999]
    size = (10, 12)
    expected = _package_octaves(fields, t, size, params)
    for dtype, atol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        raw = simplex_noise_from_fields(
            fields, torch.tensor(t), size, params, normalise=False, dtype=dtype
        )
        np.testing.assert_allclose(raw.numpy(), expected, rtol=0, atol=atol)
    scaled = simplex_noise_from_fields(fields, torch.tensor(t), size, params, dtype=torch.float64)
    np.testing.assert_allclose(scaled.numpy(), expected / octave_std(params), atol=1e-10)


def test_octave_std_constant() -> None:
    p = SimplexParams()
    expected = 0.3139 * math.sqrt(sum(0.64**k for k in range(6)))
    assert octave_std(p) == pytest.approx(expected)
    assert octave_std(SimplexParams(octaves=1)) == pytest.approx(0.3139)


def test_golden_batch_for_fixed_generator_seed() -> None:
    """Pins the whole pipeline (draw order, offsets, octaves, scaling) for one generator seed."""
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    noise = simplex_noise_like(x, torch.tensor([0, 500]), torch.Generator().manual_seed(0))
    assert noise.sum().item() == pytest.approx(-31.636204146, abs=1e-4)
    assert noise.abs().sum().item() == pytest.approx(79.438992784, abs=1e-4)
    expected_row = [-0.7031186957, -0.7664856382, -0.8540720969]
    np.testing.assert_allclose(noise[0, 0, 0, :3].numpy(), expected_row, atol=1e-6)


def test_same_generator_state_same_noise() -> None:
    x = torch.zeros(3, 2, 16, 16)
    t = torch.tensor([10, 500, 999])
    a = simplex_noise_like(x, t, torch.Generator().manual_seed(42))
    b = simplex_noise_like(x, t, torch.Generator().manual_seed(42))
    c = simplex_noise_like(x, t, torch.Generator().manual_seed(43))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_each_image_and_channel_gets_its_own_field() -> None:
    x = torch.zeros(8, 2, 32, 32)
    noise = simplex_noise_like(x, 100, torch.Generator().manual_seed(0))  # same t for all
    flat = noise.reshape(16, -1)
    corr = torch.corrcoef(flat)
    off_diagonal = corr[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.9  # no two fields are copies of each other
    assert off_diagonal.abs().mean() < 0.35


def test_field_depends_only_on_its_own_draws() -> None:
    fields = draw_simplex_fields(4, 1, torch.Generator().manual_seed(1))
    t = torch.tensor([5, 6, 7, 8])
    full = simplex_noise_from_fields(fields, t, (16, 16))
    sub = SimplexFields(fields.seeds[[2, 0]], fields.offsets[[2, 0]])
    part = simplex_noise_from_fields(sub, t[[2, 0]], (16, 16))
    torch.testing.assert_close(part, full[[2, 0]], rtol=0, atol=1e-6)


def test_per_image_seeds_ignore_batch_composition() -> None:
    x4 = torch.zeros(4, 1, 16, 16)
    x2 = torch.zeros(2, 1, 16, 16)
    a = simplex_noise_per_image(x4, torch.tensor([1, 2, 3, 4]), [10, 11, 12, 13])
    b = simplex_noise_per_image(x2, torch.tensor([3, 1]), [12, 10])
    torch.testing.assert_close(b, a[[2, 0]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_shape_dtype_device_preserved(dtype: torch.dtype) -> None:
    x = torch.zeros(2, 3, 7, 5, dtype=dtype)
    noise = simplex_noise_like(x, torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert noise.shape == x.shape
    assert noise.dtype == dtype
    assert noise.device == x.device
    assert torch.isfinite(noise.float()).all()


def test_int_t_equals_repeated_tensor_t() -> None:
    fields = draw_simplex_fields(3, 1, torch.Generator().manual_seed(3))
    a = simplex_noise_from_fields(fields, 77, (8, 8))
    b = simplex_noise_from_fields(fields, torch.full((3,), 77), (8, 8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unit_variance_and_zero_mean() -> None:
    x = torch.zeros(256, 1, 32, 32)
    t = torch.randint(0, 1000, (256,), generator=torch.Generator().manual_seed(5))
    noise = simplex_noise_like(x, t, torch.Generator().manual_seed(6))
    assert abs(noise.std().item() - 1.0) < 0.1
    assert abs(noise.mean().item()) < 0.1


def test_noise_is_spatially_smooth_unlike_gaussian() -> None:
    x = torch.zeros(16, 1, 64, 64)
    noise = simplex_noise_like(x, 500, torch.Generator().manual_seed(7))
    gauss = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))

    def neighbour_corr(e: torch.Tensor) -> float:
        right = torch.stack([e[..., :, :-1].flatten(), e[..., :, 1:].flatten()])
        down = torch.stack([e[..., :-1, :].flatten(), e[..., 1:, :].flatten()])
        return min(torch.corrcoef(right)[0, 1].item(), torch.corrcoef(down)[0, 1].item())

    assert neighbour_corr(noise) > 0.9
    assert abs(neighbour_corr(gauss)) < 0.05
    # The finest octave (length scale 2 pixels) still gives real pixel-scale structure.
    assert (noise[..., 1:, :] - noise[..., :-1, :]).abs().mean() > 0.05


def test_t_moves_the_field_smoothly() -> None:
    fields = draw_simplex_fields(4, 1, torch.Generator().manual_seed(8))
    a = simplex_noise_from_fields(fields, 100, (32, 32))
    b = simplex_noise_from_fields(fields, 101, (32, 32))
    c = simplex_noise_from_fields(fields, 400, (32, 32))
    near = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    far = torch.corrcoef(torch.stack([a.flatten(), c.flatten()]))[0, 1]
    assert near > 0.9  # t / f moves by 1/64 .. 1/2 noise units per octave
    assert far < near - 0.3


def test_bad_inputs_raise() -> None:
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError):
        simplex_noise_like(torch.zeros(2, 8, 8), 0, gen)
    with pytest.raises(TypeError):
        simplex_noise_like(torch.zeros(2, 1, 8, 8, dtype=torch.int64), 0, gen)
    with pytest.raises(ValueError):
        simplex_noise_like(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2, 3]), gen)
    with pytest.raises(ValueError):
        simplex_noise_from_fields(
            draw_simplex_fields(1, 1, gen), 0, (4, 4), SimplexParams(octaves=3)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    fields = draw_simplex_fields(4, 2, torch.Generator().manual_seed(9))
    t = torch.tensor([1, 20, 300, 999])
    cpu = simplex_noise_from_fields(fields, t, (32, 32), dtype=torch.float64)
    gpu = simplex_noise_from_fields(fields, t.cuda(), (32, 32), dtype=torch.float64, device="cuda")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)
    x = torch.zeros(4, 2, 32, 32, device="cuda")
    noise = simplex_noise_like(x, t.cuda(), torch.Generator(device="cuda").manual_seed(0))
    assert noise.device == x.device and noise.shape == x.shape
    pts = torch.rand(3, 5000, dtype=torch.float64) * 20 - 10
    ref = OpenSimplex3D(5).noise3(*pts)
    torch.testing.assert_close(OpenSimplex3D(5, "cuda").noise3(*pts.cuda()).cpu(), ref)
