"""What the benchmark scripts share: the machine description and atomic JSON results.

Every script prints a table and writes its numbers as JSON through :func:`write_json`, with
:func:`machine` beside them, so a result file says where it was measured.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from cxr_anomaly.core import atomic
from cxr_anomaly.reporting.results import machine_description

DATA_DIR_VARIABLE = "CXR_DATA_DIR"


def data_root() -> Path:
    """The shared real data: ``$CXR_DATA_DIR``, by default ``../shared/data`` beside the repo."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get(DATA_DIR_VARIABLE, default))


def zhanglab_root() -> Path:
    """The ZhangLab chest X-ray download inside :func:`data_root`."""
    return data_root() / "zhanglab-cxr"


def portable(text: str) -> str:
    """``text`` with the data folder written as ``$CXR_DATA_DIR``: no machine's path in tables."""
    return text.replace(str(data_root().resolve()), f"${DATA_DIR_VARIABLE}").replace(
        str(data_root()), f"${DATA_DIR_VARIABLE}"
    )


def machine(**extra: Any) -> dict[str, Any]:
    """The machine and software the numbers were measured with (plus ``extra`` facts)."""
    import numpy as np
    import torch

    info = {
        **machine_description(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        **extra,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = os.getloadavg()[0]
    return info


def cpu_model() -> str | None:
    """The CPU's model name (Linux), e.g. "AMD EPYC 9R14"; None where unknown."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def write_json(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically as indented JSON (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
    return path
