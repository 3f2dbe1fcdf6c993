"""The out-of-distribution flag: global image statistics against the normal validation images."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.postprocess.novelty import FEATURES, InputStatistics, image_statistics


def _phantoms(count: int, start: int, size: int = 64) -> np.ndarray:
    return np.stack([make_phantom(size, start + i).image for i in range(count)])


def test_statistics_have_one_column_per_feature_and_accept_a_channel_axis() -> None:
    images = _phantoms(4, 0)
    features = image_statistics(images)
    assert features.shape == (4, len(FEATURES))
    np.testing.assert_allclose(image_statistics(images[:, None]), features)
    assert np.allclose(features[:, 0], images.reshape(4, -1).mean(1))


def test_other_populations_are_flagged_and_normal_images_are_not() -> None:
    fitted = InputStatistics.fit(_phantoms(40, 0))
    normal = fitted.novel(fitted.distance(_phantoms(20, 1000)))
    assert normal.mean() <= 0.1  # a new normal image is rarely beyond every calibration image
    rng = np.random.default_rng(0)
    others = np.stack(
        [
            rng.random((64, 64)),  # noise
            1.0 - make_phantom(64, 5000).image,  # inverted photometry
            np.full((64, 64), 0.5),  # blank
        ]
    )
    assert fitted.novel(fitted.distance(others)).all()


def test_round_trip_and_refusals() -> None:
    fitted = InputStatistics.fit(_phantoms(10, 0))
    again = InputStatistics.from_dict(fitted.to_dict())
    images = _phantoms(3, 77)
    np.testing.assert_allclose(again.distance(images), fitted.distance(images))
    with pytest.raises(ValueError, match="other features"):
        InputStatistics.from_dict({**fitted.to_dict(), "features": ["mean"]})
    with pytest.raises(ValueError, match="at least three"):
        InputStatistics.fit(_phantoms(2, 0))
