"""Per-location normal Gaussians (PaDiM) in AnatPaste, and refitting a run's normal statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import ConfigError, Settings, TrainConfig
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.jobs.training import TrainResult, refit_normal, train
from cxr_anomaly.models.anatpaste.lightning_model import AnatPaste
from cxr_anomaly.models.components.gaussian import LocationGaussians
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from tiny import SIZE, TINY_PARAMS, tiny_run

TINY: dict[str, Any] = TINY_PARAMS["anatpaste"]


def test_location_gaussians_match_the_sample_statistics_of_each_location() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 3, 2, 2, generator=generator)
    features[:, :, 0, 0] += 5.0  # one location has another mean
    gaussians = LocationGaussians(4, 3)
    gaussians.accumulate(features[:120])
    gaussians.accumulate(features[120:])
    assert gaussians.finish() == 200
    flat = features.flatten(2).permute(2, 0, 1).double()  # (L, N, C)
    torch.testing.assert_close(gaussians.mean.double(), flat.mean(1), rtol=0, atol=1e-5)
    # An ordinary feature vector is near at every location; the shifted mean is far elsewhere.
    probe = torch.full((1, 3, 2, 2), 5.0)
    distance = gaussians(probe)[0, 0]
    assert distance[0, 0] < 3.0 < float(distance.flatten()[1:].min())


def test_location_gaussians_need_two_images() -> None:
    gaussians = LocationGaussians(4, 3)
    gaussians.accumulate(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="at least two images"):
        gaussians.finish()


def _phantoms(n: int, start: int = 0) -> torch.Tensor:
    return torch.from_numpy(
        np.stack([make_phantom(SIZE, s).image for s in range(start, start + n)])
    )[:, None]


def test_dense_score_and_map_are_fitted_and_batch_independent() -> None:
    torch.manual_seed(0)
    params = {**TINY, "dense_stages": [0, 1], "default_score": "dense"}
    model = build_model("anatpaste", params, TrainConfig(precision="32-true"))
    assert isinstance(model, AnatPaste)
    model.eval()
    model.fit_normal(iter([_phantoms(8), _phantoms(8, start=8)]), 16)
    images = _phantoms(4, start=100)
    out = model.infer(images)
    assert out.maps["dense"].shape == images.shape
    assert not torch.equal(out.maps["dense"], out.maps["mahalanobis"])
    alone = model.infer(images[:1]).scores["dense"]
    torch.testing.assert_close(alone, out.scores["dense"][:1])


def test_dense_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="dense_stages"):
        build_model("anatpaste", {**TINY, "dense_stages": [9]})
    with pytest.raises(ConfigError, match="default_score"):
        build_model("anatpaste", {**TINY, "default_score": "dense"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("refit")
    config = tiny_run("anatpaste", root / "cache")
    return train(config, root / "run", progress=False)


def test_refit_keeps_the_network_and_adds_the_dense_statistics(
    trained: TrainResult, tmp_path: Path
) -> None:
    overrides: Settings = {"dense_stages": [0, 1], "default_score": "dense"}
    out = refit_normal(trained.run_dir, tmp_path / "dense", overrides)
    metadata = read_metadata(out)
    assert metadata.model_params["default_score"] == "dense"
    assert metadata.post_processor is not None
    assert "dense" in metadata.post_processor.scores
    refitted, original = load_weights(out), load_weights(trained.run_dir)
    assert isinstance(refitted, AnatPaste) and isinstance(original, AnatPaste)
    for (name, a), (_, b) in zip(
        refitted.net.state_dict().items(), original.net.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    images = _phantoms(3, start=50)
    torch.testing.assert_close(
        refitted.infer(images).scores["mahalanobis"], original.infer(images).scores["mahalanobis"]
    )
    with pytest.raises(ConfigError, match="already holds"):
        refit_normal(trained.run_dir, out, overrides)


def test_refit_refuses_settings_that_need_other_weights(
    trained: TrainResult, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        refit_normal(trained.run_dir, tmp_path / "wide", {"head_units": [7]})


def test_the_drawn_map_can_come_from_another_score_than_the_image_score() -> None:
    from cxr_anomaly.runtime.inference import infer_arrays

    params = {**TINY, "dense_stages": [1], "map_score": "dense"}
    model = build_model("anatpaste", params, TrainConfig(precision="32-true")).eval()
    images = np.stack([make_phantom(SIZE, seed).image for seed in range(4)])[:, None]
    model.fit_normal_images([torch.from_numpy(images)], len(images))
    inferred = infer_arrays(model, images)
    direct = model.infer(torch.from_numpy(images))
    assert model.config.default_score == "mahalanobis"
    np.testing.assert_allclose(inferred.maps, direct.maps["dense"][:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(inferred.scores["mahalanobis"], direct.scores["mahalanobis"])
    with pytest.raises(ConfigError, match="no score 'nope' to draw"):
        build_model("anatpaste", {**TINY, "map_score": "nope"})


def test_refit_can_fuse_scores_and_keeps_every_weight(trained: TrainResult, tmp_path: Path) -> None:
    overrides: Settings = {"fuse": ["mahalanobis", "logit"], "default_score": "fused"}
    out = refit_normal(trained.run_dir, tmp_path / "fused", overrides)
    metadata = read_metadata(out)
    assert metadata.post_processor is not None
    assert abs(metadata.post_processor.scores["fused"].mean) < 1e-3  # z-scored on the normals
    refitted, original = load_weights(out), load_weights(trained.run_dir)
    images = _phantoms(3, start=60)
    # BatchNorm's running statistics are buffers too: they must carry over with the weights.
    torch.testing.assert_close(
        refitted.infer(images).scores["logit"], original.infer(images).scores["logit"]
    )
