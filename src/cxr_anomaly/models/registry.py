"""Model names the rest of the project uses, and how to build a model from its config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxr_anomaly.config import ConfigError, TrainConfig, from_dict
from cxr_anomaly.models.anatpaste import AnatPaste
from cxr_anomaly.models.anoddpm import AnoDDPM
from cxr_anomaly.models.base import AnomalyModel, ModelConfig
from cxr_anomaly.models.bigan import BiGAN
from cxr_anomaly.models.vaegan import VAEGAN

# name -> (model class, parameters fixed by the name)
_MODELS: dict[str, tuple[type[AnomalyModel], dict[str, Any]]] = {
    "bigan": (BiGAN, {}),
    "vaegan": (VAEGAN, {}),
    "anoddpm-gaussian": (AnoDDPM, {"noise": "gaussian"}),
    "anoddpm-simplex": (AnoDDPM, {"noise": "simplex"}),
    "anatpaste": (AnatPaste, {}),
}


def register(name: str, cls: type[AnomalyModel], fixed: dict[str, Any] | None = None) -> None:
    """Make ``cls`` available as ``name`` (with some config fields fixed by the name)."""
    _MODELS[name] = (cls, dict(fixed or {}))


def model_names() -> tuple[str, ...]:
    return tuple(_MODELS)


def model_config(name: str, params: dict[str, Any]) -> ModelConfig:
    """The typed config of model ``name`` from raw ``params`` (unknown keys are errors)."""
    cls, fixed = _entry(name)
    clashes = {k for k in params if k in fixed and params[k] != fixed[k]}
    if clashes:
        raise ConfigError(f"model {name!r} fixes {', '.join(sorted(clashes))}; drop them")
    return from_dict(cls.config_class, {**params, **fixed}, prefix="model_params.")


def build_model(
    name: str, params: dict[str, Any], train: TrainConfig | None = None
) -> AnomalyModel:
    """A fresh model ``name`` with hyperparameters ``params``.

    Example:
        >>> build_model("vaegan", {"latent_dim": 16}).model_name
        'vaegan'
    """
    cls, _ = _entry(name)
    factory: Callable[..., AnomalyModel] = cls
    model = factory(model_config(name, params), train)
    unknown = sorted(set(model.config.fuse) - set(model.own_score_names()))
    if unknown:
        raise ConfigError(
            f"model {name!r} cannot fuse {', '.join(unknown)}; "
            f"its scores are {', '.join(model.own_score_names())}"
        )
    model.registry_name = name
    return model


def _entry(name: str) -> tuple[type[AnomalyModel], dict[str, Any]]:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(_MODELS)}")
    return _MODELS[name]
