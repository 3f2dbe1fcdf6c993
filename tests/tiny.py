"""Tiny model settings (every registered model's ``tiny`` preset) and data shared by the model
tests: seconds, not minutes, on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxr_anomaly.core.config import DataConfig, RunConfig, TrainConfig
from cxr_anomaly.models.presets import load_preset
from cxr_anomaly.models.registry import model_names

SIZE = 32


def _tiny_params(name: str) -> dict[str, Any]:
    """The ``tiny`` preset's model parameters of ``name``, at :data:`SIZE`."""
    return {**load_preset(name, "tiny").model_params, "image_size": SIZE}


MODEL_NAMES = model_names()
TINY_PARAMS: dict[str, dict[str, Any]] = {name: _tiny_params(name) for name in MODEL_NAMES}


def tiny_data(cache_dir: Path, n_train: int = 24) -> DataConfig:
    """A few synthetic phantoms at 32x32."""
    spec = f"synthetic:n_train={n_train},n_val_normal=8,n_test_normal=8,n_test_abnormal=8"
    return DataConfig(spec=spec, size=SIZE, cache_dir=str(cache_dir), workers=1)


def tiny_run(name: str, cache_dir: Path, epochs: int = 1, **train: Any) -> RunConfig:
    """A run config of model ``name`` that trains in seconds, in fp32."""
    return RunConfig(
        model=name,
        model_params=dict(TINY_PARAMS[name]),
        data=tiny_data(cache_dir),
        train=TrainConfig(
            max_epochs=epochs,
            batch_size=8,
            precision="32-true",
            accelerator="cpu",
            devices=1,
            **train,
        ),
    )
