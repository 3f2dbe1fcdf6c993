"""Open the data source a :class:`~cxr_anomaly.core.config.DataConfig` names."""

from __future__ import annotations

from pathlib import Path

from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.data.folder import FolderSource
from cxr_anomaly.data.manifest import ManifestSource
from cxr_anomaly.data.rsna import RsnaSource
from cxr_anomaly.data.sources import DataSource, parse_spec
from cxr_anomaly.data.synthetic import SyntheticSource, parse_synthetic_options


def open_source(config: DataConfig) -> DataSource:
    """The source for ``config.spec``.

    Example:
        >>> open_source(DataConfig(spec="synthetic:n_train=10")).kind
        'synthetic'
    """
    kind, argument = parse_spec(config.spec)
    if kind == "synthetic":
        return SyntheticSource(parse_synthetic_options(argument))
    path = Path(argument).expanduser()
    if kind == "rsna":
        split_file = Path(config.split_file) if config.split_file else None
        return RsnaSource(path, split_file=split_file)
    if kind == "folder":
        return FolderSource(path, config.normal_classes, config.patient_pattern)
    return ManifestSource(path)
