"""Tiny model settings and data shared by the model tests (seconds, not minutes, on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxr_anomaly.config import DataConfig, RunConfig, TrainConfig

SIZE = 32

TINY_PARAMS: dict[str, dict[str, Any]] = {
    "vaegan": {
        "image_size": SIZE,
        "encoder_channels": [8, 16, 32],
        "dense_units": 64,
        "latent_dim": 16,
        "discriminator_channels": [8, 16, 16, 16],
        "discriminator_dense": 32,
    },
    "bigan": {
        "image_size": SIZE,
        "encoder_channels": [8, 16, 16],
        "latent_dim": 16,
        "generator_dense": 64,
        "generator_channels": [16, 8],
        "discriminator_channels": [8, 16],
        "discriminator_z_units": 32,
        "discriminator_joint_units": 32,
        "lr": 1e-3,
        "ema_decay": 0.9,
    },
    "anoddpm-gaussian": {
        "image_size": SIZE,
        "channels": [8, 16],
        "attention_levels": [False, True],
        "num_res_blocks": 1,
        "num_head_channels": 8,
        "norm_num_groups": 8,
        "timesteps": 100,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "depth": 12,
        "sampler": "ddim",
        "stride": 4,
        "ema_decay": 0.9,
        "inference_bf16": False,
    },
}
TINY_PARAMS["anoddpm-simplex"] = {
    **TINY_PARAMS["anoddpm-gaussian"],
    "simplex_octaves": 2,
    "simplex_frequency": 16.0,
}
TINY_PARAMS["anatpaste"] = {
    "image_size": SIZE,
    "channels": [8, 16, 32],
    "residual_blocks": 1,
    "head_units": [16],
    "patch_stage": 1,
    "lr": 1e-3,
}

MODEL_NAMES = tuple(TINY_PARAMS)


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
