"""Presets: named YAML files of settings per model, and the run config built from one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from cxr_anomaly.core.config import (
    INTENSITY_MODES,
    PRESET_DATA_KEYS,
    PRESET_NAMES,
    STORED_INTENSITY,
    ConfigError,
    DataConfig,
    RunConfig,
    Settings,
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


@dataclass(frozen=True)
class Preset:
    """A preset file's sections: the model's parameters, training settings and the data
    settings it was chosen with (only :data:`PRESET_DATA_KEYS`), each by field name."""

    model: str
    model_params: Settings = field(default_factory=dict)
    train: Settings = field(default_factory=dict)
    data: Settings = field(default_factory=dict)


def _section(raw: Settings, key: str, path: Path) -> Settings:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: the {key} section must be a mapping, got {value!r}")
    return value


def load_preset(model: str, preset: str) -> Preset:
    """A preset: a bundled name (quick, paper...) or a YAML file path."""
    path = Path(preset)
    if preset in PRESET_NAMES or not path.suffix:
        path = preset_path(model, preset)
    raw = load_yaml(path)
    preset_model = raw.get("model", model)
    if preset_model != model:
        raise ConfigError(f"{path}: preset is for model {preset_model!r}, not {model!r}")
    unknown = sorted(set(raw) - {"model", "model_params", "train", "data"})
    if unknown:
        raise ConfigError(f"{path}: unknown preset section(s) {', '.join(unknown)}")
    loaded = Preset(
        model,
        _section(raw, "model_params", path),
        _section(raw, "train", path),
        _section(raw, "data", path),
    )
    unknown = sorted(set(loaded.data) - set(PRESET_DATA_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: a preset's data section holds only {', '.join(PRESET_DATA_KEYS)}; "
            f"got {', '.join(unknown)}"
        )
    return loaded


def preset_intensity(model: str, preset: str) -> str:
    """The intensity mode a preset was chosen with (its ``data: {intensity: ...}``), else the
    stored intensities; ``train`` uses it when ``--intensity`` is not given."""
    mode = str(load_preset(model, preset).data.get("intensity", STORED_INTENSITY))
    if mode not in INTENSITY_MODES:
        raise ConfigError(f"preset {preset!r} of {model!r}: unknown intensity {mode!r}")
    return mode


def build_run_config(
    model: str,
    preset: str,
    data: DataConfig,
    train_overrides: Settings | None = None,
    model_overrides: Settings | None = None,
) -> RunConfig:
    """A run config: the preset, then overrides; the network size follows ``data.size``, and
    ``data`` replaces the preset's own data section."""
    chosen = load_preset(model, preset)
    return RunConfig.from_dict(
        {
            "model": model,
            "model_params": {
                **chosen.model_params,
                **(model_overrides or {}),
                "image_size": data.size,
            },
            "train": merge(chosen.train, train_overrides or {}),
            "data": asdict(data),
        }
    )
