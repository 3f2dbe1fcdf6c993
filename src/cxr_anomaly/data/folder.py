"""Class-per-folder image trees (``NORMAL/``, ``PNEUMONIA/``...), such as the ZhangLab set.

Two layouts:

* class folders: each sub-folder of the root is a class (``train/NORMAL``...), split by the
  ``holdout`` protocol;
* split folders: the root holds ``train/`` and labelled evaluation folders (``test-dev/``,
  ``val/``, ``test/``), each with class sub-folders, as the ZhangLab download does. The
  ``official`` protocol keeps that split: the normal images of ``train/`` train (a normal
  validation share carved out by patient), ``test-dev/`` or ``val/`` is the labelled validation
  split and ``test/`` the test split; abnormal ``train/`` images are left out.

Images are found recursively. Patient ids come from
the file name stem through a regex with a ``patient`` group, so that images of one patient stay
in one split (ZhangLab: ``IM-0115-0001`` and ``IM-0429-0001-0002`` -> ``IM-0115``, ``IM-0429``;
``person1_virus_6`` and ``person447_virus_921_1`` -> ``person1``, ``person447``; NIH
``00000001_000`` -> ``00000001``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from cxr_anomaly.data.images import SUPPORTED_SUFFIXES
from cxr_anomaly.data.records import ABNORMAL, NORMAL, Sample
from cxr_anomaly.data.sources import DataSource, DataSourceError, SourceIdentity
from cxr_anomaly.data.splits import Protocol

# The patient id is the shortest prefix ending in a number that is followed only by numbered
# parts (``-0001-0002``, ``_000``) and at most one ``_virus_921_1``-style suffix.
DEFAULT_PATIENT_PATTERN = (
    r"^(?P<patient>(?:.*?[A-Za-z][-_]?)?\d+)(?:[-_]\d+)*(?:_[A-Za-z]+(?:_\d+)+)?$"
)

HOLDOUT_DESCRIPTION = (
    "patient-level holdout: 65% of normal patients train (15% of them normal validation); "
    "the other normal patients and all abnormal patients half labelled validation, half test"
)


OFFICIAL_DESCRIPTION = (
    "the dataset's own split: normal images of train/ train (10% of their patients normal "
    "validation); test-dev/ (or val/) is the labelled validation split, test/ the test split; "
    "abnormal images of train/ are not used"
)
# Split folder name -> split of the ``official`` protocol.
SPLIT_FOLDERS = {"train": "train", "test-dev": "val", "val": "val", "test": "test"}


def holdout_protocol() -> Protocol:
    """Normal-only training with a labelled validation split and a test split, by patient."""
    return Protocol(
        "holdout", HOLDOUT_DESCRIPTION, train_pool=0.65, val_normal=0.15, labelled_val=0.5
    )


def patient_id_from_stem(stem: str, pattern: re.Pattern[str]) -> str:
    """The ``patient`` group of ``pattern`` matched on ``stem``, or the stem itself."""
    match = pattern.match(stem)
    if match is None or not match.groupdict().get("patient"):
        return stem
    return match.group("patient")


class FolderSource(DataSource):
    """A root folder with one sub-folder of images per class, or split folders holding them."""

    kind = "folder"

    def __init__(
        self,
        root: Path,
        normal_classes: Sequence[str] = ("normal",),
        patient_pattern: str | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataSourceError(f"image folder not found: {self.root}")
        self.normal_classes = tuple(c.lower() for c in normal_classes)
        try:
            self.pattern = re.compile(patient_pattern or DEFAULT_PATIENT_PATTERN)
        except re.error as err:
            raise DataSourceError(f"invalid patient pattern {patient_pattern!r}: {err}") from err
        if "patient" not in self.pattern.groupindex:
            raise DataSourceError("the patient pattern needs a named group (?P<patient>...)")

    @cached_property
    def split_folders(self) -> dict[str, str]:
        """Split folder name -> split, when the root holds ``train/`` with class folders."""
        train = self.root / "train"
        if not train.is_dir() or not any(
            p.is_dir() and p.name.lower() in self.normal_classes for p in train.iterdir()
        ):
            return {}
        return {
            p.name: SPLIT_FOLDERS[p.name]
            for p in sorted(self.root.iterdir())
            if p.is_dir() and p.name in SPLIT_FOLDERS
        }

    def _class_samples(self, folder: Path, prefix: str) -> list[Sample]:
        """The images under ``folder``'s class sub-folders; patient ids get ``prefix``."""
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if not class_dirs:
            raise DataSourceError(f"{folder}: no class sub-folders (e.g. NORMAL/, PNEUMONIA/)")
        names = [d.name for d in class_dirs]
        if not any(name.lower() in self.normal_classes for name in names):
            raise DataSourceError(
                f"{folder}: none of the class folders {names} is a normal class "
                f"({', '.join(self.normal_classes)}); set normal_classes / --normal-class"
            )
        samples: list[Sample] = []
        for class_dir in class_dirs:
            label = NORMAL if class_dir.name.lower() in self.normal_classes else ABNORMAL
            files = sorted(
                p
                for p in class_dir.rglob("*")
                if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
            )
            samples.extend(
                Sample(
                    sample_id=path.relative_to(self.root).as_posix(),
                    patient_id=prefix + patient_id_from_stem(path.stem, self.pattern),
                    label=label,
                    image_class=class_dir.name,
                    path=path,
                )
                for path in files
            )
        return samples

    @cached_property
    def _samples(self) -> list[Sample]:
        if self.split_folders:
            # Each split folder numbers its patients anew (ZhangLab's ``person101`` of train/
            # and of test/ are two children), so patient ids are kept apart by folder.
            samples = [
                sample
                for name in self.split_folders
                for sample in self._class_samples(self.root / name, f"{name}/")
            ]
        else:
            samples = self._class_samples(self.root, "")
        if not samples:
            raise DataSourceError(f"{self.root}: no DICOM, PNG or JPEG images found")
        return samples

    def samples(self) -> list[Sample]:
        return self._samples

    @property
    def has_masks(self) -> bool:
        return False

    @property
    def default_protocol(self) -> str:  # type: ignore[override]
        return "official" if self.split_folders else "holdout"

    def protocol_names(self) -> tuple[str, ...]:
        return ("official",) if self.split_folders else ("holdout",)

    def build_protocol(self, name: str) -> Protocol:
        if not self.split_folders:
            return holdout_protocol()
        fixed = {}
        for sample in self.samples():
            split = self.split_folders[sample.sample_id.split("/", 1)[0]]
            if split != "train" or sample.is_normal:
                fixed[sample.sample_id] = split
        return Protocol("official", OFFICIAL_DESCRIPTION, val_normal=0.1, fixed=fixed)

    def identity(self) -> SourceIdentity:
        return {"kind": self.kind, "root": str(self.root.resolve())}
