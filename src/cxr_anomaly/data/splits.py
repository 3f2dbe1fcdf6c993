"""Patient-level, seeded, reproducible splits and the named protocols that define them.

Splits:
    ``train``       normal images the model learns from,
    ``val_normal``  normal images held out for early stopping, model choice and score calibration,
    ``val``         a labelled validation split (normal and abnormal) for method development,
    ``test``        the labelled test split; nothing is tuned on it.

A patient never appears in two splits. Patients with any abnormal image belong to the abnormal
pool (their normal images, if any, are evaluated but never trained on).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr_anomaly.core import atomic
from cxr_anomaly.data.records import Sample

SPLITS = ("train", "val_normal", "val", "test")


class SplitError(ValueError):
    """A protocol cannot be applied to the samples (unknown class, empty split, bad split file)."""


@dataclass(frozen=True)
class Protocol:
    """A named rule that turns a source's samples into splits.

    Attributes:
        name: the protocol's name (``seed``, ``holdout``...).
        description: one line for reports: which images are normal and abnormal, and how split.
        normal_classes: image classes used as normal; ``None`` keeps every normal-labelled image.
        abnormal_classes: image classes used as abnormal; ``None`` keeps every abnormal image.
        train_pool: fraction of normal patients used for training (``val_normal`` included).
        val_normal: fraction of the training pool held out as normal validation.
        labelled_val: fraction of the remaining normal patients, and of the abnormal patients,
            put in the labelled ``val`` split; the rest go to ``test``.
        fixed: sample id -> split, given by the source (a split file, a manifest column, the
            synthetic generator). Fixed ``train`` images still lose ``val_normal`` to validation
            unless ``val_normal`` is given explicitly.
    """

    name: str
    description: str
    normal_classes: tuple[str, ...] | None = None
    abnormal_classes: tuple[str, ...] | None = None
    train_pool: float = 0.7
    val_normal: float = 0.1
    labelled_val: float = 0.0
    fixed: Mapping[str, str] | None = field(default=None, repr=False)

    def includes(self, sample: Sample) -> bool:
        """Whether ``sample`` takes part in this protocol."""
        classes = self.normal_classes if sample.is_normal else self.abnormal_classes
        if classes is not None and sample.image_class not in classes:
            return False
        return self.fixed is None or sample.sample_id in self.fixed


def split_note(protocol: str, split: str) -> str:
    """What a scored split is, and whether it may be used for choosing, for reports."""
    if split == "val" and protocol == "official":
        return "test-dev, half of the official test split: labelled validation, used for choosing"
    if split == "val":
        return "labelled validation: used for choosing"
    if split == "test" and protocol == "external":
        return "external data: every image is test data"
    return "held-out test: never used for choosing"


def external_protocol() -> Protocol:
    """Every image of the source is test data (external validation of a trained model)."""
    return Protocol(
        name="external",
        description="every image is test data (external validation)",
        train_pool=0.0,
        val_normal=0.0,
        labelled_val=0.0,
    )


@dataclass(frozen=True)
class SplitEntry:
    sample: Sample
    split: str


@dataclass
class SplitResult:
    """The outcome of a protocol: every included sample with its split."""

    protocol: Protocol
    seed: int
    entries: list[SplitEntry]

    def samples(self, split: str) -> list[Sample]:
        if split not in SPLITS:
            raise SplitError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return [entry.sample for entry in self.entries if entry.split == split]

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per split, per image class: number of patients and of images."""
        patients: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        images: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for entry in self.entries:
            cls = entry.sample.image_class
            patients[entry.split][cls].add(entry.sample.patient_id)
            images[entry.split][cls] += 1
        return {
            split: {
                cls: {"patients": len(patients[split][cls]), "images": images[split][cls]}
                for cls in sorted(images[split])
            }
            for split in SPLITS
            if split in images
        }

    def write_csv(self, path: Path) -> Path:
        """Write the split manifest: one row per image (id, patient, split, label, class, path)."""
        rows = [
            {
                "sample_id": e.sample.sample_id,
                "patient_id": e.sample.patient_id,
                "split": e.split,
                "label": e.sample.label,
                "class": e.sample.image_class,
                "path": "" if e.sample.path is None else str(e.sample.path),
            }
            for e in self.entries
        ]
        with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, ["sample_id", "patient_id", "split", "label", "class", "path"]
            )
            writer.writeheader()
            writer.writerows(rows)
        return path


def read_split_csv(path: Path) -> dict[str, str]:
    """Sample id -> split, from a manifest written by :meth:`SplitResult.write_csv`."""
    with open(path, newline="") as handle:
        return {row["sample_id"]: row["split"] for row in csv.DictReader(handle)}


def _take(patients: list[str], fraction: float) -> tuple[list[str], list[str]]:
    cut = round(fraction * len(patients))
    return patients[:cut], patients[cut:]


def _shuffled(patients: Iterable[str], rng: np.random.Generator) -> list[str]:
    ordered = sorted(patients)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def _assign_random(
    normal_patients: set[str], abnormal_patients: set[str], protocol: Protocol, seed: int
) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    normals = _shuffled(normal_patients, rng)
    abnormals = _shuffled(abnormal_patients, rng)
    pool, rest = _take(normals, protocol.train_pool)
    val_normal, train = _take(pool, protocol.val_normal)
    normal_val, normal_test = _take(rest, protocol.labelled_val)
    abnormal_val, abnormal_test = _take(abnormals, protocol.labelled_val)
    assignment: dict[str, str] = {}
    for split, group in (
        ("train", train),
        ("val_normal", val_normal),
        ("val", normal_val + abnormal_val),
        ("test", normal_test + abnormal_test),
    ):
        assignment.update(dict.fromkeys(group, split))
    return assignment


def _assign_fixed(
    samples: list[Sample], fixed: Mapping[str, str], protocol: Protocol, seed: int
) -> dict[str, str]:
    """Patient -> split from a fixed mapping; ``val_normal`` carved out of fixed ``train``."""
    by_patient: dict[str, set[str]] = defaultdict(set)
    for sample in samples:
        split = fixed[sample.sample_id]
        if split not in SPLITS:
            raise SplitError(f"sample {sample.sample_id}: unknown split {split!r}")
        if split == "train" and not sample.is_normal:
            raise SplitError(f"sample {sample.sample_id}: abnormal image in the train split")
        by_patient[sample.patient_id].add(split)
    crossing = sorted(p for p, splits in by_patient.items() if len(splits) > 1)
    if crossing:
        raise SplitError(f"patients in several splits: {', '.join(crossing[:5])}")
    assignment = {patient: next(iter(splits)) for patient, splits in by_patient.items()}
    train = [p for p, split in assignment.items() if split == "train"]
    has_val_normal = any(split == "val_normal" for split in assignment.values())
    if train and not has_val_normal and protocol.val_normal > 0:
        val_normal, _ = _take(_shuffled(train, np.random.default_rng(seed)), protocol.val_normal)
        assignment.update(dict.fromkeys(val_normal, "val_normal"))
    return assignment


def make_splits(samples: Iterable[Sample], protocol: Protocol, seed: int = 0) -> SplitResult:
    """Apply ``protocol`` to ``samples``, splitting by patient with ``seed``.

    Example:
        >>> source = open_source(DataConfig(spec="rsna:/data/rsna"))  # doctest: +SKIP
        >>> result = make_splits(source.samples(), source.protocol("seed"))  # doctest: +SKIP
    """
    samples = list(samples)
    included = [s for s in samples if protocol.includes(s)]
    if not included:
        raise SplitError(f"protocol {protocol.name!r} keeps no image of this dataset")
    ids = [s.sample_id for s in included]
    if len(set(ids)) != len(ids):
        raise SplitError("sample ids are not unique")
    if protocol.fixed is not None:
        by_patient = _assign_fixed(included, protocol.fixed, protocol, seed)
    else:
        # A patient with any abnormal image, even one of a class the protocol leaves out, is
        # never a normal (trainable) patient.
        any_abnormal = {s.patient_id for s in samples if not s.is_normal}
        patients = {s.patient_id for s in included}
        normal = patients - any_abnormal
        by_patient = _assign_random(normal, patients - normal, protocol, seed)
    entries = [SplitEntry(s, by_patient[s.patient_id]) for s in included]
    order = {name: i for i, name in enumerate(SPLITS)}
    entries.sort(key=lambda e: (order[e.split], e.sample.sample_id))
    return SplitResult(protocol=protocol, seed=seed, entries=entries)
