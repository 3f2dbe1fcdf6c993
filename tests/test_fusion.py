"""Z-normalised score fusion inside a model: statistics from normal validation images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import ConfigError, TrainConfig
from cxr_anomaly.jobs.training import train
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import load_weights
from tiny import TINY_PARAMS, tiny_run


def test_fusing_an_unknown_score_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot fuse"):
        build_model("vaegan", {**TINY_PARAMS["vaegan"], "fuse": ["l1", "nope"]})


def test_fused_score_is_the_mean_of_z_scores_and_its_map_averages_to_it() -> None:
    model = build_model(
        "vaegan", {**TINY_PARAMS["vaegan"], "fuse": ["l1", "feature"]}, TrainConfig()
    )
    model.set_fusion_stats([0.1, 0.2], [0.05, 0.5])
    x = torch.rand(3, 1, 32, 32)
    result = model.infer(x)
    expected = ((result.scores["l1"] - 0.1) / 0.05 + (result.scores["feature"] - 0.2) / 0.5) / 2
    torch.testing.assert_close(result.scores["fused"], expected)
    assert model.score_names()[-1] == "fused"


def test_multi_depth_anoddpm_fusion_is_calibrated_and_saved(tmp_path: Path) -> None:
    config = tiny_run("anoddpm-gaussian", tmp_path / "cache")
    config.model_params.update(extra_depths=[6], fuse=["l1", "l1@6"], default_score="fused")
    run = train(config, tmp_path / "run", progress=False)
    post_processor = json.loads((tmp_path / "run" / "model.json").read_text())["post_processor"]
    fused = np.array(post_processor["scores"]["fused"]["normal_scores"])
    assert abs(fused.mean()) < 1e-4  # z-scores of the very images the statistics came from
    stats = run.model.fusion_stats
    assert not torch.equal(stats, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    reloaded = load_weights(tmp_path / "run")
    torch.testing.assert_close(reloaded.fusion_stats, stats.cpu())
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(reloaded.score(x), run.model.score(x))


def test_zscores_fuse_and_disagreement() -> None:
    from cxr_anomaly.core.normalise import disagreement, fuse, zscores_against
    from cxr_anomaly.postprocess.calibration import ScoreCalibration
    from cxr_anomaly.postprocess.post_processor import PostProcessor

    normal = np.array([1.0, 2.0, 3.0])
    post_processor = PostProcessor({"l1": ScoreCalibration.fit(normal)}, 1.0, 0.0, n_images=3)
    z = post_processor.zscores(np.array([2.0, 4.0]), "l1")
    np.testing.assert_allclose(z, [0.0, 2.0])  # mean 2, sample std 1
    np.testing.assert_allclose(zscores_against(np.array([2.0, 4.0]), normal), z)
    a, b = np.array([0.0, 2.0]), np.array([2.0, 2.0])
    np.testing.assert_allclose(fuse([a, b]), [1.0, 2.0])
    torch.testing.assert_close(
        fuse([torch.tensor(a), torch.tensor(b)]), torch.tensor([1.0, 2.0]).double()
    )
    np.testing.assert_allclose(disagreement([a, b]), [np.sqrt(2.0), 0.0])
    np.testing.assert_allclose(disagreement([a]), [0.0, 0.0])
    with pytest.raises(KeyError, match="calibrated"):
        post_processor.zscores(a, "nope")
