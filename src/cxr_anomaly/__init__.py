"""cxr-anomaly: unsupervised anomaly detection in chest X-rays.

Example:
    >>> import cxr_anomaly
    >>> model = cxr_anomaly.load_model("runs/demo/runs/vaegan")  # doctest: +SKIP
    >>> predictions = model.predict(["scan.dcm"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxr_anomaly.core.version import __version__

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from cxr_anomaly.jobs.predict import ScoringModel


def load_model(run_dir: Any) -> ScoringModel:
    """A trained model from its run folder (or an exported one), ready to ``predict``
    (imports torch on first use)."""
    from cxr_anomaly.jobs.predict import load_model as _load

    return _load(run_dir)
