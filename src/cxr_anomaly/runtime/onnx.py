"""Reading an exported model: its ``export.json`` and an onnxruntime session for its graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from cxr_anomaly.postprocess.post_processor import PostProcessorJson

EXPORT_FILE = "export.json"
ONNX_FILE = "model.onnx"
FORMATS = ("onnx",)


class PreprocessingJson(TypedDict):
    image_size: int
    intensity: str
    apply_voi_lut: bool


class ExportJson(TypedDict):
    """``export.json``: what the graph of an exported model cannot hold, and its parity check."""

    format: str
    onnx: str
    opset: int
    model: str
    score: str
    outputs: list[str]
    input: str
    preprocessing: PreprocessingJson
    post_processor: PostProcessorJson
    exported_from: str
    versions: dict[str, str]
    parity: dict[str, float | int | str]


class ExportError(ValueError):
    """The run cannot be exported (its model, a missing dependency, or a failed parity check)."""


def onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session for ``path`` (the ``export`` extra must be installed)."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            "onnxruntime is not installed: pip install 'cxr-anomaly[export]'"
        ) from err
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_export(path: Path) -> ExportJson:
    """The ``export.json`` of an exported model folder (raises ExportError if unusable)."""
    file = Path(path) / EXPORT_FILE
    try:
        description: ExportJson = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{file}: cannot read the export description: {err}") from err
    if description.get("format") not in FORMATS:
        raise ExportError(f"{file}: unknown export format {description.get('format')!r}")
    return description
