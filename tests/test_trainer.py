"""The inference Trainer is quiet unless progress is asked for."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cxr_anomaly.runtime import trainer
from cxr_anomaly.runtime.trainer import LIGHTNING_INFO_LOGGERS, ScoringOptions


def _info_enabled_while_building(monkeypatch: pytest.MonkeyPatch, progress: bool) -> list[bool]:
    """Whether Lightning's announcement loggers would emit INFO while the Trainer is built."""
    seen: list[bool] = []

    def fake_trainer(**kwargs: Any) -> object:
        seen.extend(logging.getLogger(n).isEnabledFor(logging.INFO) for n in LIGHTNING_INFO_LOGGERS)
        return object()

    monkeypatch.setattr(trainer.L, "Trainer", fake_trainer)
    for name in LIGHTNING_INFO_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.INFO)
    trainer.build_predict_trainer(ScoringOptions(progress=progress))
    return seen


def test_a_quiet_predict_trainer_holds_back_lightnings_announcements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _info_enabled_while_building(monkeypatch, progress=False) == [False, False]
    # Afterwards the loggers are as they were.
    assert all(logging.getLogger(n).level == logging.INFO for n in LIGHTNING_INFO_LOGGERS)


def test_with_progress_lightning_announces_as_it_likes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _info_enabled_while_building(monkeypatch, progress=True) == [True, True]
