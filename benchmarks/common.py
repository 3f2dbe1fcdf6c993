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
