"""The reverse-diffusion loop's simplex noise, drawn ahead: the same as drawing step by step."""

from __future__ import annotations

import pytest
import torch

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.anoddpm.noise import (
    SimplexFields,
    SimplexParams,
    draw_simplex_fields,
    simplex_noise_from_fields,
)
from cxr_anomaly.models.anoddpm.noise_stream import PerImageSimplexNoise
from cxr_anomaly.models.registry import build_model
from tiny import SIZE, TINY_PARAMS

PARAMS = SimplexParams(octaves=3, frequency=16.0)


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _step_by_step(seeds: list[int], timesteps: list[int], dtype: torch.dtype) -> list[torch.Tensor]:
    """Every step draws each image's fields from its generator, then evaluates them."""
    generators = _generators(seeds)
    out = []
    for t in timesteps:
        fields = SimplexFields.concat([draw_simplex_fields(1, 2, g, PARAMS) for g in generators])
        out.append(simplex_noise_from_fields(fields, t, (12, 10), PARAMS, dtype=dtype))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lookahead", [1, 4, 32])
def test_drawn_ahead_is_bit_identical_to_step_by_step(dtype: torch.dtype, lookahead: int) -> None:
    seeds, timesteps = [3, 7, 11], [40, 39, 38, 30, 29, 17, 16, 9, 1]
    stream = PerImageSimplexNoise(_generators(seeds), 2, PARAMS, dtype=dtype, lookahead=lookahead)
    drawn = [stream((3, 2, 12, 10), t) for t in timesteps]
    for ahead, reference in zip(drawn, _step_by_step(seeds, timesteps, dtype), strict=True):
        assert ahead.dtype == dtype
        assert torch.equal(ahead, reference)


def test_each_step_draws_new_fields() -> None:
    stream = PerImageSimplexNoise(_generators([5]), 1, PARAMS)
    first, second = stream((1, 1, 16, 16), 10), stream((1, 1, 16, 16), 10)
    assert not torch.allclose(first, second)


def test_a_shape_that_does_not_match_the_generators_is_rejected() -> None:
    stream = PerImageSimplexNoise(_generators([1, 2]), 1, PARAMS)
    with pytest.raises(ValueError, match="2 generators"):
        stream((3, 1, 8, 8), 5)
    with pytest.raises(ValueError, match="lookahead"):
        PerImageSimplexNoise(_generators([1]), 1, PARAMS, lookahead=0)
    with pytest.raises(ValueError, match="none"):
        PerImageSimplexNoise([], 1, PARAMS)


def test_every_step_ddpm_scores_do_not_depend_on_the_batch() -> None:
    """The DDPM sampler draws noise at every step: the stream crosses several draws ahead."""
    torch.manual_seed(0)
    params = {**TINY_PARAMS["anoddpm-simplex"], "sampler": "ddpm", "depth": 9}
    model = build_model("anoddpm-simplex", params, TrainConfig(precision="32-true"))
    images = torch.rand(6, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    together = model.score(images)
    alone = torch.cat([model.score(images[i : i + 1]) for i in (4, 1)])
    torch.testing.assert_close(alone, together[[4, 1]], rtol=0, atol=1e-6)
