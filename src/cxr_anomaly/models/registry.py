"""The one list of models: each model's name, class, fixed settings, tags and presets.

Everything that needs the list of models (the CLI, ``demo``, the presets, the benchmarks, the
tests) asks this module. It imports no network code until a model is built, so the CLI can
list models and check names at once. Adding a model: its file under ``models/``, its preset
YAML files under ``configs/`` (``tiny`` for the tests, ``quick`` at least), and one
:class:`ModelSpec` below (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_anomaly.core.config import ConfigError, Settings, TrainConfig, from_dict

if TYPE_CHECKING:
    from cxr_anomaly.models.components.base import ModelConfig
    from cxr_anomaly.models.components.lightning_model import AnomalyModel

REFERENCE = "reference"
"""Tag of the reference study's models (with the ``paper`` presets, its configuration)."""
DEMO = "demo"
"""Tag of the models ``demo`` and ``benchmark`` train by default."""


@dataclass(frozen=True)
class ModelSpec:
    """What the project knows about one model before building it."""

    name: str
    #: ``module:Class`` of its ``AnomalyModel`` subclass.
    target: str
    summary: str
    #: Config fields the name fixes (``anoddpm-simplex`` is AnoDDPM with simplex noise).
    fixed: Settings = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    #: The recipe for real radiographs: the preset ``train`` uses when none is named.
    default_preset: str = "robust"

    def model_class(self) -> type[AnomalyModel]:
        module, _, name = self.target.partition(":")
        cls: type[AnomalyModel] = getattr(importlib.import_module(module), name)
        return cls

    def presets(self) -> tuple[str, ...]:
        """The bundled presets of this model (``configs/<name>-<preset>.yaml``)."""
        return tuple(sorted(p.stem.removeprefix(f"{self.name}-") for p in _preset_files(self)))


def _preset_files(spec: ModelSpec) -> list[Path]:
    folder = Path(str(resources.files("cxr_anomaly") / "configs"))
    return sorted(folder.glob(f"{spec.name}-*.yaml"))


_BOTH = frozenset({REFERENCE, DEMO})
_SPECS = (
    ModelSpec(
        "bigan",
        "cxr_anomaly.models.bigan.lightning_model:BiGAN",
        "BiGAN / EGBAD: encoder, generator and a joint discriminator",
        tags=_BOTH,
    ),
    ModelSpec(
        "vaegan",
        "cxr_anomaly.models.vaegan.lightning_model:VAEGAN",
        "VAE-GAN: a VAE whose decoder is also a GAN generator",
        tags=_BOTH,
    ),
    *(
        ModelSpec(
            f"anoddpm-{noise}",
            "cxr_anomaly.models.anoddpm.lightning_model:AnoDDPM",
            f"AnoDDPM with {noise} noise: partial diffusion and denoising",
            fixed={"noise": noise},
            tags=_BOTH,
            default_preset=preset,
        )
        for noise, preset in (("gaussian", "long"), ("simplex", "robust"))
    ),
    ModelSpec(
        "anatpaste",
        "cxr_anomaly.models.anatpaste.lightning_model:AnatPaste",
        "AnatPaste: self-supervised lung-texture pasting, Gaussian density of its features",
        tags=frozenset({DEMO}),
    ),
)
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def model_names(tag: str | None = None) -> tuple[str, ...]:
    """Every model's name, or those with ``tag`` (:data:`REFERENCE`, :data:`DEMO`)."""
    return tuple(name for name, spec in MODELS.items() if tag is None or tag in spec.tags)


def model_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name is a ConfigError listing the known ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


def model_config(name: str, params: Settings) -> ModelConfig:
    """The typed config of model ``name`` from raw ``params`` (unknown keys are errors)."""
    spec = model_spec(name)
    clashes = {k for k in params if k in spec.fixed and params[k] != spec.fixed[k]}
    if clashes:
        raise ConfigError(f"model {name!r} fixes {', '.join(sorted(clashes))}; drop them")
    config_class = spec.model_class().config_class
    return from_dict(config_class, {**params, **spec.fixed}, prefix="model_params.")


def build_model(name: str, params: Settings, train: TrainConfig | None = None) -> AnomalyModel:
    """A fresh model ``name`` with hyperparameters ``params``.

    Example:
        >>> build_model("vaegan", {"latent_dim": 16}).name
        'vaegan'
    """
    model = model_spec(name).model_class()(model_config(name, params), train)
    if model.config.drawn_score not in model.score_names():
        raise ConfigError(
            f"model {name!r} has no score {model.config.drawn_score!r} to draw; "
            f"its scores are {', '.join(model.score_names())}"
        )
    source = model.config.pixel_z_of
    if source is not None and source not in model.own_score_names():
        raise ConfigError(
            f"model {name!r} has no score {source!r} to judge per pixel; "
            f"its scores are {', '.join(model.own_score_names())}"
        )
    cap = model.config.pixel_z_images
    if cap is not None and cap < 2:
        raise ConfigError(f"pixel_z_images must be at least 2 (or null: all), got {cap}")
    unknown = sorted(set(model.config.fuse) - set(model.own_score_names()))
    if unknown:
        raise ConfigError(
            f"model {name!r} cannot fuse {', '.join(unknown)}; "
            f"its scores are {', '.join(model.own_score_names())}"
        )
    return model
