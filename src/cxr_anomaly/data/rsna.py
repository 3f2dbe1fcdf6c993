"""RSNA Pneumonia Detection Challenge (Kaggle 2018): labels, boxes and named protocols.

Point it at the Kaggle folder (``stage_2_train_images/`` beside the two label CSVs) or at a
folder holding the label files alone (splits then work; preparing images needs the DICOMs).
Normal means class ``Normal``, not ``Target == 0`` (which also holds "Not Normal" patients).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from functools import cached_property
from pathlib import Path

from cxr_anomaly.data.records import ABNORMAL, NORMAL, Box, Sample
from cxr_anomaly.data.sources import DataSource, DataSourceError, SourceIdentity
from cxr_anomaly.data.splits import Protocol

NORMAL_CLASS = "Normal"
OPACITY_CLASS = "Lung Opacity"
NOT_NORMAL_CLASS = "No Lung Opacity / Not Normal"
LABELS_FILE = "stage_2_train_labels.csv"
CLASSES_FILE = "stage_2_detailed_class_info.csv"
IMAGES_DIR = "stage_2_train_images"
SPLIT_FILE = "ddad_rsna_data.json"


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / "labels" / name):
        if candidate.is_file():
            return candidate
    return None


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            missing = set(columns) - set(reader.fieldnames or ())
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise DataSourceError(f"{path}: cannot read RSNA label file: {err}") from err
    if missing:
        raise DataSourceError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return rows


def read_medianomaly_split(path: Path) -> dict[str, str]:
    """Patient id -> split from the DDAD/MedIAnomaly RSNA split file.

    ``train/0`` (Normal) becomes ``train``; ``test/0`` and ``test/1`` become ``test``; the
    ``train/unlabeled`` lists are not used by the benchmark.
    """
    try:
        data = json.loads(path.read_text())
        lists = {
            "train": data["train"]["0"],
            "test": [*data["test"]["0"], *data["test"]["1"]],
        }
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataSourceError(f"{path}: not a MedIAnomaly RSNA split file: {err}") from err
    return {Path(name).stem: split for split, names in lists.items() for name in names}


class RsnaSource(DataSource):
    """The RSNA Kaggle folder (or its label files alone)."""

    kind = "rsna"
    default_protocol = "seed"

    def __init__(self, root: Path, split_file: Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataSourceError(f"RSNA folder not found: {self.root}")
        labels = _find(self.root, LABELS_FILE)
        classes = _find(self.root, CLASSES_FILE)
        if labels is None or classes is None:
            raise DataSourceError(
                f"{self.root}: expected {LABELS_FILE} and {CLASSES_FILE} (or a labels/ folder)"
            )
        self.labels_file, self.classes_file = labels, classes
        self.images_dir = self.root / IMAGES_DIR
        self.split_file = split_file

    @cached_property
    def _samples(self) -> list[Sample]:
        classes: dict[str, str] = {}
        for row in _read_csv(self.classes_file, ("patientId", "class")):
            classes.setdefault(row["patientId"], row["class"])
        boxes: dict[str, list[Box]] = defaultdict(list)
        for row in _read_csv(self.labels_file, ("patientId", "Target")):
            if row.get("Target") == "1" and row.get("x"):
                boxes[row["patientId"]].append(
                    Box(float(row["x"]), float(row["y"]), float(row["width"]), float(row["height"]))
                )
        return [
            Sample(
                sample_id=pid,
                patient_id=pid,
                label=NORMAL if cls == NORMAL_CLASS else ABNORMAL,
                image_class=cls,
                path=self.images_dir / f"{pid}.dcm",
                boxes=tuple(boxes.get(pid, ())),
            )
            for pid, cls in sorted(classes.items())
        ]

    def samples(self) -> list[Sample]:
        return self._samples

    @property
    def has_masks(self) -> bool:
        return True

    def _medianomaly_split(self) -> dict[str, str]:
        path = self.split_file or _find(self.labels_file.parent, SPLIT_FILE)
        if path is None:
            raise DataSourceError(
                f"protocol 'medianomaly' needs {SPLIT_FILE} next to the label files "
                f"({self.labels_file.parent}) or --split-file PATH"
            )
        return read_medianomaly_split(path)

    def protocol_names(self) -> tuple[str, ...]:
        return ("seed", "medianomaly", "opacity", "not-normal")

    def build_protocol(self, name: str) -> Protocol:
        normal = (NORMAL_CLASS,)
        if name == "medianomaly":
            return Protocol(
                "medianomaly",
                "MedIAnomaly/DDAD benchmark split: 3,851 Normal train (10% held out as normal "
                "validation); test 1,000 Normal + 1,000 Lung Opacity",
                normal_classes=normal,
                abnormal_classes=(OPACITY_CLASS,),
                fixed=self._medianomaly_split(),
            )
        abnormal, what = {
            "seed": (
                (OPACITY_CLASS, NOT_NORMAL_CLASS),
                "Lung Opacity + Not Normal (reference study)",
            ),
            "opacity": ((OPACITY_CLASS,), "Lung Opacity"),
            "not-normal": ((NOT_NORMAL_CLASS,), "No Lung Opacity / Not Normal"),
        }[name]
        return Protocol(
            name,
            f"Normal vs {what}; 70% of Normal patients train (10% of them held out as normal "
            "validation), the other Normal and all abnormal patients test",
            normal_classes=normal,
            abnormal_classes=abnormal,
        )

    def identity(self) -> SourceIdentity:
        return {"kind": self.kind, "root": str(self.images_dir.resolve())}
