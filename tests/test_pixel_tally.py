"""Pixel metrics kept batch by batch: equal to the whole-map metrics within the budget, bounded
and independent of batching beyond it."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.pixel_tally import PixelTally


def _maps_and_masks(n: int, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise maps; half the images carry a bright square that their mask covers."""
    rng = np.random.default_rng(seed)
    maps = rng.random((n, side, side)).astype(np.float32)
    masks = np.zeros((n, side, side), bool)
    for i in range(0, n, 2):
        top, left = rng.integers(0, side - side // 4, 2)
        masks[i, top : top + side // 4, left : left + side // 4] = True
        maps[i][masks[i]] += 0.5
    return maps, masks


def _tally(tally: PixelTally, maps: np.ndarray, masks: np.ndarray, batch: int) -> list:
    kept = []
    for start in range(0, len(maps), batch):
        index = np.arange(start, min(start + batch, len(maps)))
        kept += tally.keep(index, maps[index], masks[index])
    return kept


def test_within_the_budget_the_metrics_are_those_of_the_whole_maps() -> None:
    maps, masks = _maps_and_masks(12, 16)
    found = PixelTally.metrics(_tally(PixelTally(12), maps, masks, batch=5))
    assert found == metrics.pixel_metrics(maps, masks)


def test_beyond_the_budget_samples_follow_the_image_not_the_batch() -> None:
    maps, masks = _maps_and_masks(20, 32)
    tally = PixelTally(20, budget=2_000)
    one = _tally(tally, maps, masks, batch=20)
    three = _tally(tally, maps, masks, batch=7)
    assert sum(image.values.size for image in one) <= 2_000
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.positive, b.positive)
    assert PixelTally.metrics(three) == PixelTally.metrics(one)


def test_a_sample_estimates_the_whole_map_metrics() -> None:
    maps, masks = _maps_and_masks(40, 32, seed=1)
    whole = metrics.pixel_metrics(maps, masks)
    sampled = PixelTally.metrics(_tally(PixelTally(40, budget=8_000), maps, masks, batch=8))
    assert sampled is not None
    assert sampled.pixel_auroc == pytest.approx(whole.pixel_auroc, abs=0.02)
    assert sampled.best_dice == pytest.approx(whole.best_dice, abs=0.05)
    assert sampled.pointing_game == whole.pointing_game  # every image's peak, exactly


def test_images_repeated_by_padding_count_once_and_no_lesion_means_no_metrics() -> None:
    maps, masks = _maps_and_masks(4, 8)
    tally = PixelTally(4)
    kept = tally.keep(np.arange(4), maps, masks) + tally.keep(np.arange(2), maps[:2], masks[:2])
    assert PixelTally.metrics(kept) == metrics.pixel_metrics(maps, masks)
    assert PixelTally.metrics(tally.keep(np.arange(4), maps, np.zeros_like(masks))) is None
