"""CSV manifests: ``full_path,label`` (the reference study's format) plus optional columns.

Optional columns: ``patient_id`` (default: one patient per image), ``class`` (default
``normal``/``abnormal``), ``split`` (``train``, ``val_normal``, ``val`` or ``test``; enables the
``fixed`` protocol) and ``mask_path`` (a mask image aligned with the image). Relative paths are
relative to the CSV's folder. ``label`` is 0/1 or a class name (``normal`` means normal).
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

from cxr_anomaly.data.folder import holdout_protocol
from cxr_anomaly.data.records import ABNORMAL, NORMAL, Sample
from cxr_anomaly.data.sources import DataSource, DataSourceError, SourceIdentity
from cxr_anomaly.data.splits import SPLITS, Protocol


def _parse_label(value: str | None, where: str) -> int:
    text = (value or "").strip().lower()
    if text in {"0", "normal"}:
        return NORMAL
    if text in {"1", "abnormal"} or (text and not text.isdigit()):
        return ABNORMAL
    raise DataSourceError(f"{where}: label must be 0, 1 or a class name, got {value!r}")


class ManifestSource(DataSource):
    """Images listed in a CSV file."""

    kind = "manifest"

    def __init__(self, csv_path: Path) -> None:
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise DataSourceError(f"manifest not found: {self.csv_path}")

    @cached_property
    def _rows(self) -> list[dict[str, str]]:
        try:
            # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
            with open(self.csv_path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
                columns = set(reader.fieldnames or ())
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            raise DataSourceError(f"{self.csv_path}: cannot read manifest: {err}") from err
        missing = {"full_path", "label"} - columns
        if missing:
            raise DataSourceError(
                f"{self.csv_path}: missing column(s) {', '.join(sorted(missing))}"
            )
        if not rows:
            raise DataSourceError(f"{self.csv_path}: the manifest lists no images")
        for line, row in enumerate(rows, start=2):
            if not (row.get("full_path") or "").strip():
                raise DataSourceError(f"{self.csv_path}:{line}: empty full_path")
            split = (row.get("split") or "").strip()
            if split and split not in SPLITS:
                raise DataSourceError(
                    f"{self.csv_path}:{line}: split must be one of {', '.join(SPLITS)} "
                    f"(or empty), got {split!r}"
                )
        return rows

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.csv_path.parent / path

    @cached_property
    def _samples(self) -> list[Sample]:
        samples = []
        for line, row in enumerate(self._rows, start=2):
            where = f"{self.csv_path}:{line}"
            label = _parse_label(row["label"], where)
            raw_label = (row["label"] or "").strip()
            default_class = "normal" if label == NORMAL else "abnormal"
            image_class = (row.get("class") or "").strip() or (
                raw_label if not raw_label.isdigit() else default_class
            )
            path = self._path(row["full_path"])
            mask = (row.get("mask_path") or "").strip()
            samples.append(
                Sample(
                    sample_id=row["full_path"],
                    patient_id=(row.get("patient_id") or "").strip() or path.stem,
                    label=label,
                    image_class=image_class,
                    path=path,
                    mask_path=self._path(mask) if mask else None,
                )
            )
        return samples

    def samples(self) -> list[Sample]:
        return self._samples

    @property
    def default_protocol(self) -> str:  # type: ignore[override]
        return "fixed" if self._has_split_column else "holdout"

    @property
    def _has_split_column(self) -> bool:
        return any((row.get("split") or "").strip() for row in self._rows)

    def protocol_names(self) -> tuple[str, ...]:
        return ("fixed", "holdout") if self._has_split_column else ("holdout",)

    def build_protocol(self, name: str) -> Protocol:
        if name == "holdout":
            return holdout_protocol()
        fixed = {row["full_path"]: (row.get("split") or "").strip() for row in self._rows}
        return Protocol(
            "fixed",
            "splits as given in the manifest's split column",
            val_normal=0.0 if "val_normal" in fixed.values() else 0.1,
            fixed={k: v for k, v in fixed.items() if v},
        )

    def identity(self) -> SourceIdentity:
        return {"kind": self.kind, "root": str(self.csv_path.resolve())}
