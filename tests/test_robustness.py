"""The label-free robustness yardstick: unchanged images score 0.5, a noticed change 1.0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.evaluation.robustness import PERTURBATIONS, robustness
from cxr_anomaly.models.components.base import Inference, ModelConfig
from cxr_anomaly.models.components.lightning_model import AnomalyModel


class MeanBrightness(AnomalyModel):
    """A "model" whose score is the image's mean intensity: it notices every exposure change."""

    config_class = ModelConfig
    name = "mean-brightness"
    has_reconstruction = False

    def __init__(self) -> None:
        super().__init__(ModelConfig(default_score="mean"))

    def own_score_names(self) -> tuple[str, ...]:
        return ("mean",)

    def _infer(self, x: torch.Tensor) -> Inference:
        return Inference(reconstruction=None, maps={"mean": x}, scores={"mean": x.mean((1, 2, 3))})


def _data(tmp_path: Path, intensity: str) -> PreparedData:
    spec = "synthetic:n_train=4,n_val_normal=24,n_test_normal=2,n_test_abnormal=2"
    config = DataConfig(spec=spec, size=32, cache_dir=str(tmp_path), workers=1, intensity=intensity)
    data = PreparedData(config)
    data.prepare(("val_normal",))
    return data


def test_a_change_the_model_cannot_see_scores_one_half(tmp_path: Path) -> None:
    found = robustness(
        MeanBrightness(), _data(tmp_path, "none"), perturbations={"none": lambda x: x}
    )
    assert found == {"none": 0.5, "mean |AUROC - 0.5|": 0.0}


def test_exposure_changes_are_flagged_without_standardisation(tmp_path: Path) -> None:
    found = robustness(MeanBrightness(), _data(tmp_path, "none"))
    assert set(found) == {*PERTURBATIONS, "mean |AUROC - 0.5|"}
    # Gamma 0.8 brightens every image, 1.25 darkens every one; the images' own spread of
    # brightness overlaps the shift, so the AUROC moves away from 0.5 without reaching 0 or 1.
    assert found["gamma 0.8"] > 0.6 and found["gamma 1.25"] < 0.4
    assert found["mean |AUROC - 0.5|"] > 0.05


def test_standardised_intensities_hide_exposure_changes(tmp_path: Path) -> None:
    found = robustness(MeanBrightness(), _data(tmp_path, "standardize"))
    for name in ("gamma 0.8", "gamma 1.25", "contrast -15%", "contrast +15%"):
        assert abs(found[name] - 0.5) < 0.15, name


def test_too_few_images_are_refused(tmp_path: Path) -> None:
    spec = "synthetic:n_train=4,n_val_normal=1,n_test_normal=2,n_test_abnormal=2"
    data = PreparedData(DataConfig(spec=spec, size=32, cache_dir=str(tmp_path), workers=1))
    data.prepare(("val_normal",))
    with pytest.raises(ValueError, match="at least two images"):
        robustness(MeanBrightness(), data)
