"""Presets: named YAML files of settings per model, and the run config built from one."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from cxr_anomaly.core.config import (
    INTENSITY_MODES,
    PRESET_DATA_KEYS,
    PRESET_NAMES,
    STORED_INTENSITY,
    ConfigError,
    DataConfig,
    RunConfig,
    load_yaml,
    merge,
)
from cxr_anomaly.models.registry import model_spec


def preset_path(model: str, preset: str) -> Path:
    """The bundled preset file for ``model`` (see :data:`PRESET_NAMES`)."""

    spec = model_spec(model)
    name = f"{model}-{preset}.yaml"
    path = Path(str(resources.files("cxr_anomaly") / "configs")) / name
    if not path.is_file():
        raise ConfigError(
            f"no preset {preset!r} for model {model!r} (looked for {name}); "
            f"its presets: {', '.join(spec.presets()) or 'none'}"
        )
    return path


def load_preset(model: str, preset: str) -> dict[str, Any]:
    """A preset as a raw mapping: a bundled name (quick, paper) or a YAML file path."""
    path = Path(preset)
    if preset in PRESET_NAMES or not path.suffix:
        path = preset_path(model, preset)
    raw = load_yaml(path)
    preset_model = raw.get("model", model)
    if preset_model != model:
        raise ConfigError(f"{path}: preset is for model {preset_model!r}, not {model!r}")
    raw["model"] = model
    unknown = sorted(set(raw.get("data") or {}) - set(PRESET_DATA_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: a preset's data section holds only {', '.join(PRESET_DATA_KEYS)}; "
            f"got {', '.join(unknown)}"
        )
    return raw


def preset_intensity(model: str, preset: str) -> str:
    """The intensity mode a preset was chosen with (its ``data: {intensity: ...}``), else the
    stored intensities; ``train`` uses it when ``--intensity`` is not given."""
    mode = str((load_preset(model, preset).get("data") or {}).get("intensity", STORED_INTENSITY))
    if mode not in INTENSITY_MODES:
        raise ConfigError(f"preset {preset!r} of {model!r}: unknown intensity {mode!r}")
    return mode


def build_run_config(
    model: str,
    preset: str,
    data: DataConfig,
    train_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """A run config: the preset, then overrides; the network size follows ``data.size``, and
    ``data`` replaces the preset's own data section."""
    raw = merge(
        load_preset(model, preset),
        {"train": train_overrides or {}, "model_params": model_overrides or {}},
    )
    raw["data"] = asdict(data)
    raw["model_params"] = {**raw.get("model_params", {}), "image_size": data.size}
    return RunConfig.from_dict(raw)
