"""A trained model on disk: weights in safetensors, everything else in JSON.

``RUN_DIR/model.safetensors`` holds the weights (EMA copies included); ``RUN_DIR/model.json``
the model name and hyperparameters, the training settings, the data and preprocessing that
produced it, its post-processor (score calibration, map scale, input statistics) and the
library versions. Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import torch
from safetensors.torch import load_file, save

from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import DataConfig, Settings, TrainConfig, from_dict
from cxr_anomaly.core.version import __version__
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.postprocess.post_processor import PostProcessor

if TYPE_CHECKING:
    from cxr_anomaly.models.components.lightning_model import AnomalyModel

FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


class CheckpointError(ValueError):
    """A run folder does not hold a loadable model."""


def library_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that shape its numbers."""
    import lightning
    import monai
    import numpy
    import pydicom
    import sklearn

    return {
        "python": platform.python_version(),
        "cxr_anomaly": __version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "pydicom": pydicom.__version__,
        "scikit-learn": sklearn.__version__,
    }


@dataclass(frozen=True)
class ProtocolRecord:
    """The split protocol a model was trained under."""

    name: str
    description: str


@dataclass(frozen=True)
class TrainingRecord:
    """How a training went: its length, hardware and the epoch whose weights were kept."""

    epochs: int
    steps: int
    seconds: float
    precision: str
    devices: int = 1
    num_nodes: int = 1
    n_train_images: int = 0
    #: The best normal-validation epoch and its loss, where the weights of that epoch were kept.
    best_epoch: int | None = None
    best_val_loss: float | None = None
    #: The run whose network this one kept, for a run made by ``refit``.
    refit_from: str | None = None

    def to_json(self) -> TrainingJson:
        return cast(TrainingJson, asdict(self))


class TrainingJson(TypedDict):
    """:class:`TrainingRecord` as results files hold it."""

    epochs: int
    steps: int
    seconds: float
    precision: str
    devices: int
    num_nodes: int
    n_train_images: int
    best_epoch: int | None
    best_val_loss: float | None
    refit_from: str | None


@dataclass
class ModelMetadata:
    """What ``model.json`` holds."""

    model: str
    #: The model's own settings (its ``ModelConfig`` subclass, by field name).
    model_params: Settings
    train: TrainConfig
    data: DataConfig
    protocol: ProtocolRecord
    training: TrainingRecord
    #: Fitted on the normal validation images; ``None`` for a run without them.
    post_processor: PostProcessor | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """``model.json``'s text."""
        pp = self.post_processor
        fields = {**asdict(self), "post_processor": None if pp is None else pp.to_dict()}
        return json.dumps(fields, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Read ``model.json``'s text (raises ValueError, KeyError or TypeError if unusable)."""
        raw = json.loads(text)
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {raw.get('format_version')}")
        pp = raw["post_processor"]
        return cls(
            model=str(raw["model"]),
            model_params=dict(raw["model_params"]),
            train=from_dict(TrainConfig, raw["train"]),
            data=from_dict(DataConfig, raw["data"]),
            protocol=ProtocolRecord(**raw["protocol"]),
            training=TrainingRecord(**raw["training"]),
            post_processor=PostProcessor.from_dict(pp) if pp else None,
            versions=dict(raw["versions"]),
        )


def save_model(model: AnomalyModel, run_dir: Path, metadata: ModelMetadata) -> None:
    """Write the weights and metadata atomically (weights first, so JSON marks completion)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic.write_bytes(run_dir / WEIGHTS_FILE, save(state))
    atomic.write_text(run_dir / META_FILE, metadata.to_json())


def read_metadata(run_dir: Path) -> ModelMetadata:
    path = Path(run_dir) / META_FILE
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise CheckpointError(f"{run_dir}: no trained model here (missing {META_FILE})") from err
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable model metadata: {err}") from err
    try:
        return ModelMetadata.from_json(text)
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: model metadata of another version: {err}") from err


def load_weights(run_dir: Path, metadata: ModelMetadata | None = None) -> AnomalyModel:
    """The trained model of ``run_dir`` in eval mode on the CPU."""

    metadata = metadata or read_metadata(run_dir)
    train = metadata.train
    model = build_model(metadata.model, metadata.model_params, train)
    weights = Path(run_dir) / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot read weights: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{weights}: the weights do not fit the {metadata.model} model of this version of"
            f" cxr-anomaly ({metadata.versions.get('cxr_anomaly', 'unknown')} wrote them): {err}"
        ) from err
    if train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()
