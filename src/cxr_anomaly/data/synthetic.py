"""The built-in synthetic dataset: procedural chest X-ray phantoms with exact lesion masks.

Spec: ``synthetic`` or ``synthetic:key=value,...`` with the fields of
:class:`~cxr_anomaly.data.phantoms.SyntheticSpec` (``n_train``, ``n_val_normal``,
``n_test_normal``, ``n_test_abnormal``, ``difficulty``, ``seed``).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

from cxr_anomaly.core.config import Settings, from_dict
from cxr_anomaly.data.images import ReadOptions
from cxr_anomaly.data.phantoms import SyntheticItem, SyntheticSpec, render_item, synthetic_items
from cxr_anomaly.data.records import ABNORMAL, NORMAL, Sample
from cxr_anomaly.data.sources import DataSource, DataSourceError, LoadedSample, SourceIdentity
from cxr_anomaly.data.splits import Protocol

GENERATOR_VERSION = 1


def parse_synthetic_options(argument: str) -> SyntheticSpec:
    """``n_train=500,difficulty=0.4`` -> SyntheticSpec; unknown keys or bad values raise."""
    fields = {f.name: f for f in dataclasses.fields(SyntheticSpec)}
    values: Settings = {}
    for part in filter(None, (p.strip() for p in argument.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise DataSourceError(
                f"synthetic option {part!r}: use key=value with keys {', '.join(fields)}"
            )
        try:
            values[key] = float(value) if key == "difficulty" else int(value)
        except ValueError as err:
            raise DataSourceError(f"synthetic option {part!r}: {err}") from err
    return from_dict(SyntheticSpec, values)


class SyntheticSource(DataSource):
    """Phantom images generated on demand, fully determined by the spec and the size."""

    kind = "synthetic"
    default_protocol = "default"

    def __init__(self, spec: SyntheticSpec | None = None) -> None:
        self.spec = spec or SyntheticSpec()

    @cached_property
    def _items(self) -> dict[str, SyntheticItem]:
        return {item.item_id: item for item in synthetic_items(self.spec)}

    def samples(self) -> list[Sample]:
        return [
            Sample(
                sample_id=item.item_id,
                patient_id=item.item_id,
                label=NORMAL if item.anomaly is None else ABNORMAL,
                image_class="normal" if item.anomaly is None else item.anomaly,
            )
            for item in self._items.values()
        ]

    @property
    def has_masks(self) -> bool:
        return True

    def protocol_names(self) -> tuple[str, ...]:
        return ("default",)

    def build_protocol(self, name: str) -> Protocol:
        spec = self.spec
        return Protocol(
            "default",
            f"synthetic phantoms (difficulty {spec.difficulty}, seed {spec.seed}): "
            f"{spec.n_train} normal train, {spec.n_val_normal} normal validation, "
            f"test {spec.n_test_normal} normal + {spec.n_test_abnormal} abnormal "
            "(six anomaly types in turn)",
            fixed={item.item_id: item.split for item in self._items.values()},
        )

    def load(self, sample: Sample, size: int, options: ReadOptions) -> LoadedSample:
        phantom = render_item(self._items[sample.sample_id], size, self.spec.difficulty)
        mask = phantom.mask if phantom.anomaly is not None else None
        return LoadedSample(image=phantom.image, mask=mask)

    def identity(self) -> SourceIdentity:
        return {
            "kind": self.kind,
            "generator_version": GENERATOR_VERSION,
            **dataclasses.asdict(self.spec),
        }

    def describe(self) -> str:
        spec = self.spec
        return (
            f"synthetic phantoms ({spec.n_train} train, {spec.n_val_normal} normal validation, "
            f"{spec.n_test_normal} normal + {spec.n_test_abnormal} abnormal test; "
            f"difficulty {spec.difficulty:g}, seed {spec.seed})"
        )

    def label(self) -> str:
        return "synthetic phantoms"
