"""Simplex noise for the reverse-diffusion loop, each image's from its own generator, drawn ahead.

Partial diffusion asks for one noise tensor per step, and AnoDDPM draws each image's noise from
that image's own generator, so that its score does not depend on the batch it is in. Drawing
step by step, each image's field seeds would travel to the host at every step to build
OpenSimplex permutation tables, and the device would wait for them. :class:`PerImageSimplexNoise`
draws the fields of several steps at once instead, each generator in the order the steps would
have drawn them, so the noise is the same, bit for bit, as drawing step by step; the tables of
all those fields are built in one host pass and moved to the device once, and the steps in
between do device work only. It draws 1, 2, 4, ... up to ``lookahead`` steps at a time, so a
loop that needs one noise draw (DDIM without stochasticity) pays for one.

Example:
    >>> import torch
    >>> from cxr_anomaly.models.anoddpm.noise import SimplexParams
    >>> generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    >>> noise = PerImageSimplexNoise(generators, channels=1, params=SimplexParams())
    >>> noise((2, 1, 64, 64), 99).shape
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cxr_anomaly.models.anoddpm.noise import (
    PreparedFields,
    SimplexFields,
    SimplexParams,
    draw_simplex_fields,
    prepare_fields,
    simplex_noise_from_prepared,
)

#: The most steps whose fields are drawn and prepared at once.
LOOKAHEAD = 32


class PerImageSimplexNoise:
    """Successive noise draws for a batch; image i's fields come from ``generators[i]``.

    Called as ``noise(shape, t)`` with ``shape = (N, C, H, W)``: the noise of the next step, at
    timestep ``t``, like ``x`` of that shape on the generators' device.

    Args:
        generators: One per image, all on one device (where the noise is computed).
        channels: Fields per image (C).
        params: Noise parameters.
        normalise: Scale to unit variance (see
        :func:`~cxr_anomaly.models.anoddpm.noise.octave_std`).
        dtype: Output dtype (float64 computes in float64, anything else in float32).
        lookahead: The most steps drawn and prepared at once; memory for their tables is about
            ``lookahead * N * C * 16`` KiB.
    """

    def __init__(
        self,
        generators: Sequence[torch.Generator],
        channels: int,
        params: SimplexParams,
        normalise: bool = True,
        dtype: torch.dtype = torch.float32,
        lookahead: int = LOOKAHEAD,
    ) -> None:
        if not generators:
            raise ValueError("need one generator per image, got none")
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1, got {lookahead}")
        devices = {g.device for g in generators}
        if len(devices) != 1:
            raise ValueError(
                f"the generators must share one device, got {sorted(map(str, devices))}"
            )
        self.generators = list(generators)
        self.channels = channels
        self.params = params
        self.normalise = normalise
        self.dtype = dtype
        self.lookahead = lookahead
        self.device = devices.pop()
        self._prepared: PreparedFields | None = None
        self._ready = 0  # steps drawn and not yet used
        self._used = 0  # steps of the current draw already used
        self._next_draw = 1

    def _draw(self) -> None:
        """Draws and prepares the fields of the next steps (1, 2, 4, ... up to ``lookahead``)."""
        steps = self._next_draw
        self._next_draw = min(2 * steps, self.lookahead)
        per_image = [
            [draw_simplex_fields(1, self.channels, g, self.params) for _ in range(steps)]
            for g in self.generators
        ]  # each generator draws its steps in order, as step-by-step drawing would
        step_major = [per_image[i][k] for k in range(steps) for i in range(len(self.generators))]
        fields = SimplexFields.concat(step_major)
        self._prepared = prepare_fields(fields, self.device, self.dtype)
        self._ready, self._used = steps, 0

    def __call__(self, shape: tuple[int, ...], t: int) -> torch.Tensor:
        n, c, h, w = shape
        if n != len(self.generators) or c != self.channels:
            raise ValueError(
                f"noise of shape {tuple(shape)} asked of {len(self.generators)} generators and "
                f"{self.channels} channels"
            )
        if self._used == self._ready:
            self._draw()
        assert self._prepared is not None
        step = self._prepared.rows(self._used * n, (self._used + 1) * n)
        self._used += 1
        return simplex_noise_from_prepared(step, t, (h, w), self.params, self.normalise, self.dtype)
