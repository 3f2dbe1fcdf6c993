"""Shared test fixtures: where the real data lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def data_dir() -> Path:
    """The shared real-data folder (``CXR_DATA_DIR``, default ``../shared/data``)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("CXR_DATA_DIR", default))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads the shared real data ``data`` (``-m 'not data'`` skips them)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder not found at {path} (set CXR_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def rsna_dir(shared_data: Path) -> Path:
    path = shared_data / "rsna"
    if not (path / "labels" / "stage_2_train_labels.csv").is_file():
        pytest.skip(f"RSNA label files not found under {path}")
    return path


@pytest.fixture(scope="session")
def zhanglab_dir(shared_data: Path) -> Path:
    path = shared_data / "zhanglab-cxr" / "train"
    if not (path / "NORMAL").is_dir():
        pytest.skip(f"ZhangLab folder not found under {path}")
    return path


@pytest.fixture(scope="session")
def dicom_fixtures_dir(shared_data: Path) -> Path:
    path = shared_data / "dicom-fixtures"
    if not path.is_dir():
        pytest.skip(f"DICOM fixtures not found under {path}")
    return path
