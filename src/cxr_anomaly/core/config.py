"""Typed configuration: dataclasses with YAML/JSON in and out, and the bundled presets.

One :class:`RunConfig` describes a whole training run: which model with which hyperparameters,
which data, and how to train. Presets are YAML files shipped with the package
(``cxr_anomaly/configs/<model>-<preset>.yaml``); any YAML file of the same shape works too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


PRESET_NAMES = ("tiny", "quick", "long", "paper")


"""The bundled presets: ``tiny`` (seconds, for tests and smoke runs), ``quick`` (minutes on a
CPU), ``long`` and ``paper`` (the reference study's configuration); some models have more."""


# The intensity modes of ``data.preprocess`` (kept here so the config needs no numpy import).
INTENSITY_MODES = ("none", "standardize", "equalize", "local")


STORED_INTENSITY = "none"


"""The intensity mode that leaves images at their stored intensities."""


PRESET_DATA_KEYS = ("intensity",)


"""What a preset may say about the data: the preprocessing its recipe was chosen with. The
command line's data settings replace it (``train`` takes it where ``--intensity`` is absent)."""

#: A setting's value as YAML, JSON or ``--set`` give it, before :func:`from_dict` checks it
#: against the dataclass field it is for.
SettingValue: TypeAlias = (
    "str | int | float | bool | list[SettingValue] | tuple[SettingValue, ...] "
    "| dict[str, SettingValue] | None"
)
#: Settings by field name (a preset's section, ``--set`` overrides, a model's parameters).
Settings: TypeAlias = "dict[str, SettingValue]"


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message says which key and why."""


@dataclass
class DataConfig:
    """Where the images come from and how they are prepared.

    Attributes:
        spec: ``synthetic[:key=value,...]``, ``rsna:PATH``, ``folder:PATH`` or ``manifest:CSV``.
        protocol: a named split protocol of the source; ``None`` takes the source's default.
        size: images are resized to ``size`` x ``size`` pixels (32 to 256).
        split_seed: seed of the patient-level split.
        split_file: a split file for protocols that need one (RSNA ``medianomaly``).
        normal_classes: for ``folder:`` sources, the class folder names that hold normal images.
        patient_pattern: for ``folder:`` sources, a regex with a group ``patient`` applied to the
            file name stem; ``None`` uses the ZhangLab-style default.
        cache_dir: where preprocessed arrays are kept; ``None`` uses ``$CXR_ANOMALY_CACHE`` or
            ``~/.cache/cxr-anomaly``.
        workers: processes used to prepare the cache; 0 means one per CPU core.
        apply_voi_lut: apply the DICOM VOI LUT / window when the file has one.
        intensity: per-image intensity standardisation after resizing: ``none``,
            ``standardize`` (mean and spread), ``equalize`` (histogram equalisation) or
            ``local`` (local contrast normalisation); see
            :mod:`cxr_anomaly.data.preprocess`. Saved with a trained model, so ``predict`` and
            ``evaluate`` on other data prepare images the same way.
    """

    spec: str = "synthetic"
    protocol: str | None = None
    size: int = 64
    split_seed: int = 0
    split_file: str | None = None
    normal_classes: list[str] = field(default_factory=lambda: ["normal"])
    patient_pattern: str | None = None
    cache_dir: str | None = None
    workers: int = 0
    apply_voi_lut: bool = True
    intensity: str = "none"

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 256:
            raise ConfigError(f"data.size must be between 32 and 256, got {self.size}")
        if self.intensity not in INTENSITY_MODES:
            raise ConfigError(
                f"data.intensity must be one of {', '.join(INTENSITY_MODES)}, "
                f"got {self.intensity!r}"
            )


@dataclass
class AugmentConfig:
    """Random changes to training images, per image (see :mod:`cxr_anomaly.data.augment`).

    Every range is drawn uniformly from 0 (or 1) to the value given; 0 turns a change off.

    Attributes:
        shift: largest shift along each axis, as a fraction of the image side.
        rotate: largest rotation, in degrees.
        scale: largest relative zoom in or out.
        gamma: gamma drawn log-uniformly in ``[1 / (1 + gamma), 1 + gamma]``.
        contrast: contrast about the image mean scaled by ``1 +- contrast``.
        blur: largest Gaussian blur sigma, in pixels of a 64-pixel image.
        noise: largest standard deviation of added Gaussian noise.
    """

    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    gamma: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if getattr(self, item.name) < 0:
                raise ConfigError(f"train.augment.{item.name} must not be negative")
        if self.scale >= 1 or self.contrast >= 1 or self.shift >= 0.5:
            raise ConfigError("train.augment: scale and contrast must be below 1, shift below 0.5")

    @property
    def enabled(self) -> bool:
        """Whether any change is drawn."""
        return any(dataclasses.astuple(self))


@dataclass
class TrainConfig:
    """How a model is trained (the Lightning Trainer's settings and the data loader's).

    Attributes:
        max_epochs: number of passes over the normal training images.
        batch_size: images per optimisation step (per device).
        seed: seeds weights, data order and training noise.
        precision: Lightning precision; ``"auto"`` picks ``bf16-mixed`` on CPUs with bf16 units
            and on GPUs that support it, else ``32-true``.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``...
        devices: number of devices (or ``"auto"``).
        num_nodes: machines taking part in distributed training.
        strategy: Lightning strategy (``"auto"``, ``"ddp"``...).
        channels_last: keep images and weights in channels-last memory format.
        sync_batchnorm: under DDP, BatchNorm statistics over all processes' batches.
        num_workers: data-loader worker processes.
        early_stopping_patience: stop after this many epochs without a better normal
            validation loss; ``None`` trains all ``max_epochs``.
        restore_best: end with the weights of the epoch with the lowest normal validation
            loss (model choice without labels) instead of the last epoch's.
        max_time: wall-clock cap, Lightning's ``DD:HH:MM:SS`` format.
        log_every_n_steps: how often losses are logged.
        augment: random changes to the training images (none by default).
        fuse_sharpness: also fit the fusion of the default score with the sharpness detector
            (:mod:`cxr_anomaly.postprocess.sharpness_fusion`) and keep it with the model;
            ``predict`` then
            reports the fused score.
    """

    max_epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    channels_last: bool = True
    sync_batchnorm: bool = True
    num_workers: int = 0
    early_stopping_patience: int | None = None
    restore_best: bool = False
    max_time: str | None = None
    log_every_n_steps: int = 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fuse_sharpness: bool = False


@dataclass
class RunConfig:
    """Everything a training run needs: model name and hyperparameters, data, training."""

    model: str
    model_params: Settings = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> Settings:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Settings) -> RunConfig:
        return from_dict(cls, raw)


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Validate (shallowly) and coerce ``value`` to ``annotation``; raise ConfigError if wrong."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type, *_) = get_args(annotation) or (Any,)
        items = [_check_type(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], raw: Settings, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Example:
        >>> from_dict(TrainConfig, {"max_epochs": 3}).max_epochs
        3
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    values = {key: _check_type(value, hints[key], prefix + key) for key, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def merge(base: Settings, override: Settings) -> Settings:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, others replace)."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: Path) -> Settings:
    """Read a YAML mapping; a missing file or non-mapping content is a ConfigError."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping")
    return loaded


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
