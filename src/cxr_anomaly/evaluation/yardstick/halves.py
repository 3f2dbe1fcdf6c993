"""Two fixed halves of a labelled validation split, drawn by patient: ``choose`` and ``confirm``.

Settings are chosen on ``choose``; ``confirm`` says whether a choice carries over. The halves
are drawn once, per class (so each half keeps the split's normal/abnormal balance), and kept as
a CSV manifest in the repository, so that every later measurement uses the same two halves.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cxr_anomaly.core import atomic
from cxr_anomaly.data.records import Sample

HALVES = ("choose", "confirm")
FIELDS = ("sample_id", "patient_id", "label", "half")


def draw_halves(samples: Iterable[Sample], seed: int = 0) -> dict[str, str]:
    """sample id -> ``"choose"`` or ``"confirm"``, every image of a patient in one half.

    Each class's patients, shuffled by ``seed``, go one by one to the half holding fewer of
    that class's images so far, so both halves keep the split's balance of classes and images.
    """
    samples = list(samples)
    half_of_patient: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for label in sorted({s.label for s in samples}):
        counts = Counter(s.patient_id for s in samples if s.label == label)
        patients = sorted(set(counts) - set(half_of_patient))
        held = dict.fromkeys(HALVES, 0)
        for index in rng.permutation(len(patients)):
            half = min(HALVES, key=held.__getitem__)
            half_of_patient[patients[index]] = half
            held[half] += counts[patients[index]]
    return {s.sample_id: half_of_patient[s.patient_id] for s in samples}


def write_halves(path: Path, samples: Iterable[Sample], halves: dict[str, str]) -> Path:
    """The manifest: one row per image (sample id, patient, label, half)."""
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for s in sorted(samples, key=lambda s: s.sample_id):
            writer.writerow([s.sample_id, s.patient_id, s.label, halves[s.sample_id]])
    return path


def read_halves(path: Path) -> dict[str, str]:
    """sample id -> half, from a manifest written by :func:`write_halves`."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or set(FIELDS) - set(rows[0]):
        raise ValueError(f"{path}: a halves manifest needs the columns {', '.join(FIELDS)}")
    bad = {r["half"] for r in rows} - set(HALVES)
    if bad:
        raise ValueError(f"{path}: unknown half {sorted(bad)[0]!r}; expected {' or '.join(HALVES)}")
    return {r["sample_id"]: r["half"] for r in rows}
