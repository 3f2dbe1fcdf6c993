"""Patient-level, seeded splits: protocols, reproducibility, normal-only training, manifests."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from cxr_anomaly.data.folder import holdout_protocol
from cxr_anomaly.data.records import ABNORMAL, NORMAL, Sample
from cxr_anomaly.data.splits import (
    SPLITS,
    Protocol,
    SplitError,
    SplitResult,
    external_protocol,
    make_splits,
    read_split_csv,
)


def _sample(sample_id: str, patient: str, label: int, cls: str | None = None) -> Sample:
    default = "normal" if label == NORMAL else "abnormal"
    return Sample(sample_id, patient, label, cls or default, Path(f"/x/{sample_id}.png"))


def _dataset(
    n_normal: int = 100, n_abnormal: int = 60, images_per_patient: int = 2
) -> list[Sample]:
    """``n_normal`` normal and ``n_abnormal`` abnormal patients, several images each."""
    samples = []
    for p in range(n_normal):
        samples += [
            _sample(f"n{p:03d}-{i}", f"n{p:03d}", NORMAL) for i in range(images_per_patient)
        ]
    for p in range(n_abnormal):
        samples += [
            _sample(f"a{p:03d}-{i}", f"a{p:03d}", ABNORMAL) for i in range(images_per_patient)
        ]
    return samples


def _patient_splits(result: SplitResult) -> dict[str, set[str]]:
    by_patient: dict[str, set[str]] = defaultdict(set)
    for entry in result.entries:
        by_patient[entry.sample.patient_id].add(entry.split)
    return by_patient


def _assignment(result: SplitResult) -> dict[str, str]:
    return {e.sample.sample_id: e.split for e in result.entries}


SEED_LIKE = Protocol("seed-like", "70% normal patients train, rest test")


def test_no_patient_in_two_splits_and_every_image_kept() -> None:
    samples = _dataset(images_per_patient=3)
    for protocol in (SEED_LIKE, holdout_protocol()):
        result = make_splits(samples, protocol, seed=3)
        assert len(result.entries) == len(samples)
        assert all(len(splits) == 1 for splits in _patient_splits(result).values())


def test_same_seed_gives_identical_splits_and_another_seed_differs() -> None:
    samples = _dataset()
    first = make_splits(samples, holdout_protocol(), seed=7)
    again = make_splits(list(reversed(samples)), holdout_protocol(), seed=7)
    other = make_splits(samples, holdout_protocol(), seed=8)
    assert _assignment(first) == _assignment(again)
    assert _assignment(first) != _assignment(other)
    # Different seeds change which patients train, not how many.
    assert first.summary() == other.summary()


def test_fractions_of_the_default_protocol() -> None:
    # 100 normal patients: 70 in the training pool, 7 of them held out as normal validation.
    result = make_splits(_dataset(100, 60, 1), SEED_LIKE, seed=0)
    summary = result.summary()
    assert summary["train"] == {"normal": {"patients": 63, "images": 63}}
    assert summary["val_normal"] == {"normal": {"patients": 7, "images": 7}}
    assert "val" not in summary
    assert summary["test"] == {
        "abnormal": {"patients": 60, "images": 60},
        "normal": {"patients": 30, "images": 30},
    }


def test_holdout_gives_normal_only_training_and_labelled_val_and_test() -> None:
    result = make_splits(_dataset(200, 100), holdout_protocol(), seed=1)
    for split in ("train", "val_normal"):
        samples = result.samples(split)
        assert samples and all(s.label == NORMAL for s in samples)
    for split in ("val", "test"):
        labels = {s.label for s in result.samples(split)}
        assert labels == {NORMAL, ABNORMAL}
    patients = {split: {s.patient_id for s in result.samples(split)} for split in SPLITS}
    # 65% of 200 normal patients in the pool, 15% of the pool held out: 111 + 19.
    assert len(patients["train"]) + len(patients["val_normal"]) == 130
    assert len(patients["val_normal"]) == round(0.15 * 130)
    # The abnormal patients are halved between val and test.
    abnormal_val = {s.patient_id for s in result.samples("val") if s.label == ABNORMAL}
    assert len(abnormal_val) == 50


def test_patient_with_normal_and_abnormal_images_never_trains() -> None:
    samples = _dataset(20, 0, 1)
    # Patient "mixed" has two normal images and one abnormal image.
    mixed = [
        _sample("mixed-0", "mixed", NORMAL),
        _sample("mixed-1", "mixed", NORMAL),
        _sample("mixed-2", "mixed", ABNORMAL),
    ]
    for seed in range(20):
        result = make_splits(samples + mixed, Protocol("p", "d", train_pool=1.0), seed=seed)
        mixed_splits = {e.split for e in result.entries if e.sample.patient_id == "mixed"}
        assert mixed_splits == {"test"}
        # All the other normal patients are trainable.
        assert len(result.samples("train")) + len(result.samples("val_normal")) == 20


def test_patient_with_an_excluded_abnormal_image_never_trains() -> None:
    """A protocol that leaves a class out still knows its patients are not normal."""
    samples = [_sample(f"n{i}", f"n{i}", NORMAL, "Normal") for i in range(10)]
    samples += [
        _sample("x-normal", "x", NORMAL, "Normal"),
        _sample("x-other", "x", ABNORMAL, "Other"),
        _sample("o", "o", ABNORMAL, "Opacity"),
    ]
    protocol = Protocol(
        "opacity-only", "d", ("Normal",), ("Opacity",), train_pool=1.0, val_normal=0.0
    )
    result = make_splits(samples, protocol, seed=0)
    assignment = _assignment(result)
    assert "x-other" not in assignment
    assert assignment["x-normal"] == "test"
    assert assignment["o"] == "test"
    assert {s.sample_id for s in result.samples("train")} == {f"n{i}" for i in range(10)}


def test_class_filters_keep_only_the_protocol_classes() -> None:
    samples = [_sample(f"n{i}", f"n{i}", NORMAL, "Normal") for i in range(10)]
    samples += [_sample(f"o{i}", f"o{i}", ABNORMAL, "Opacity") for i in range(5)]
    samples += [_sample(f"z{i}", f"z{i}", ABNORMAL, "Other") for i in range(5)]
    result = make_splits(samples, Protocol("p", "d", ("Normal",), ("Opacity",)), seed=0)
    assert Counter(e.sample.image_class for e in result.entries) == {"Normal": 10, "Opacity": 5}


def test_write_csv_round_trips_one_row_per_image(tmp_path: Path) -> None:
    result = make_splits(_dataset(30, 10, 2), holdout_protocol(), seed=5)
    path = result.write_csv(tmp_path / "sub" / "splits.csv")
    assert read_split_csv(path) == _assignment(result)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.entries) == 80
    assert {"sample_id", "patient_id", "split", "label", "class"} <= set(rows[0])
    by_id = {e.sample.sample_id: e.sample for e in result.entries}
    for row in rows:
        sample = by_id[row["sample_id"]]
        assert row["patient_id"] == sample.patient_id
        assert int(row["label"]) == sample.label
        assert row["class"] == sample.image_class
    # No temporary file is left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["splits.csv"]


def test_summary_counts_patients_and_images_per_class() -> None:
    result = make_splits(_dataset(10, 4, 3), external_protocol(), seed=0)
    assert result.summary() == {
        "test": {
            "abnormal": {"patients": 4, "images": 12},
            "normal": {"patients": 10, "images": 30},
        }
    }


def test_fixed_protocol_carves_val_normal_out_of_train_with_the_seed() -> None:
    samples = _dataset(40, 10, 1)
    fixed = {s.sample_id: "train" if s.label == NORMAL else "test" for s in samples}
    protocol = Protocol("fixed", "d", fixed=fixed)
    result = make_splits(samples, protocol, seed=0)
    assert len(result.samples("val_normal")) == 4
    assert len(result.samples("train")) == 36
    assert len(result.samples("test")) == 10
    assert _assignment(result) == _assignment(make_splits(samples, protocol, seed=0))
    assert _assignment(result) != _assignment(make_splits(samples, protocol, seed=1))


def test_fixed_protocol_keeps_a_given_val_normal_and_only_listed_samples() -> None:
    samples = _dataset(10, 2, 1)
    fixed = {"n000-0": "val_normal", "n001-0": "train", "n002-0": "train", "a000-0": "test"}
    result = make_splits(samples, Protocol("fixed", "d", fixed=fixed), seed=0)
    assert _assignment(result) == fixed


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"a000-0": "train"}, "abnormal image in the train split"),
        ({"n000-0": "training"}, "unknown split"),
        ({"n000-0": "train", "n000-1": "test"}, "patients in several splits: n000"),
    ],
)
def test_fixed_protocol_errors(fixed: dict[str, str], message: str) -> None:
    with pytest.raises(SplitError, match=message):
        make_splits(_dataset(3, 2, 2), Protocol("fixed", "d", fixed=fixed))


def test_errors_for_empty_protocols_duplicate_ids_and_unknown_split_names() -> None:
    samples = _dataset(5, 0, 1)
    with pytest.raises(SplitError, match="keeps no image"):
        make_splits(samples, Protocol("p", "d", normal_classes=("Nothing",)))
    with pytest.raises(SplitError, match="not unique"):
        make_splits([*samples, samples[0]], SEED_LIKE)
    with pytest.raises(SplitError, match="unknown split 'training'"):
        make_splits(samples, SEED_LIKE).samples("training")


def test_external_protocol_puts_everything_in_test() -> None:
    samples = _dataset(10, 10, 1)
    result = make_splits(samples, external_protocol(), seed=0)
    assert {e.split for e in result.entries} == {"test"}
    assert len(result.entries) == 20
