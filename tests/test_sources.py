"""Dataset sources: RSNA (real labels and sample DICOMs), class folders (ZhangLab), CSV manifests
and the synthetic phantoms; their protocols and their errors."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.data.cache import ImageCache, PrepareReport
from cxr_anomaly.data.catalog import open_source
from cxr_anomaly.data.folder import DEFAULT_PATIENT_PATTERN, FolderSource, patient_id_from_stem
from cxr_anomaly.data.images import ReadOptions
from cxr_anomaly.data.manifest import ManifestSource
from cxr_anomaly.data.records import ABNORMAL, NORMAL
from cxr_anomaly.data.rsna import (
    NORMAL_CLASS,
    NOT_NORMAL_CLASS,
    OPACITY_CLASS,
    RsnaSource,
)
from cxr_anomaly.data.sources import DataSourceError, parse_spec
from cxr_anomaly.data.splits import SplitError, SplitResult, make_splits
from cxr_anomaly.data.synthetic import SyntheticSource, parse_synthetic_options

RSNA_CLASSES = (NORMAL_CLASS, OPACITY_CLASS, NOT_NORMAL_CLASS)


def _patient_splits(result: SplitResult) -> dict[str, set[str]]:
    by_patient: dict[str, set[str]] = defaultdict(set)
    for entry in result.entries:
        by_patient[entry.sample.patient_id].add(entry.split)
    return by_patient


def _class_patients(result: SplitResult, split: str) -> dict[str, set[str]]:
    patients: dict[str, set[str]] = defaultdict(set)
    for sample in result.samples(split):
        patients[sample.image_class].add(sample.patient_id)
    return patients


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# -- RSNA: the 16-image sample -------------------------------------------------------------------


@pytest.fixture(scope="session")
def rsna_sample(rsna_dir: Path) -> RsnaSource:
    return RsnaSource(rsna_dir / "sample")


@pytest.fixture(scope="session")
def rsna_sample_boxes(rsna_dir: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """patientId -> boxes (x, y, width, height) in 1024-pixel coordinates, read here directly."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for row in _read_rows(rsna_dir / "sample" / "stage_2_train_labels.csv"):
        if row["Target"] == "1":
            boxes[row["patientId"]].append(
                (float(row["x"]), float(row["y"]), float(row["width"]), float(row["height"]))
            )
    return dict(boxes)


@pytest.fixture(scope="session")
def rsna_sample_cache(
    rsna_sample: RsnaSource, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ImageCache, PrepareReport]:
    cache = ImageCache(rsna_sample, 64, ReadOptions(), root=tmp_path_factory.mktemp("rsna-cache"))
    report = cache.ensure(workers=1)
    return cache, report


def test_rsna_sample_lists_16_patients_by_class(rsna_sample: RsnaSource) -> None:
    samples = rsna_sample.samples()
    assert len(samples) == 16
    assert len({s.patient_id for s in samples}) == 16
    assert Counter(s.image_class for s in samples) == {
        NORMAL_CLASS: 4,
        OPACITY_CLASS: 5,
        NOT_NORMAL_CLASS: 7,
    }
    for sample in samples:
        assert sample.label == (NORMAL if sample.image_class == NORMAL_CLASS else ABNORMAL)
        assert sample.path is not None and sample.path.is_file()


def test_rsna_sample_has_boxes_for_exactly_the_opacity_patients(
    rsna_sample: RsnaSource, rsna_sample_boxes: dict[str, list[tuple[float, ...]]]
) -> None:
    samples = rsna_sample.samples()
    opacity = {s.patient_id for s in samples if s.image_class == OPACITY_CLASS}
    assert {s.patient_id for s in samples if s.boxes} == opacity == set(rsna_sample_boxes)
    for sample in samples:
        got = [(b.x, b.y, b.width, b.height) for b in sample.boxes]
        assert sorted(got) == sorted(rsna_sample_boxes.get(sample.patient_id, []))


def test_rsna_target_zero_not_normal_patients_are_abnormal(
    rsna_dir: Path, rsna_sample: RsnaSource
) -> None:
    target = {
        row["patientId"]: row["Target"]
        for row in _read_rows(rsna_dir / "sample" / "stage_2_train_labels.csv")
    }
    not_normal = [s for s in rsna_sample.samples() if s.image_class == NOT_NORMAL_CLASS]
    assert not_normal and all(target[s.patient_id] == "0" for s in not_normal)
    assert all(s.label == ABNORMAL and not s.is_normal for s in not_normal)
    result = make_splits(rsna_sample.samples(), rsna_sample.protocol("seed"), seed=0)
    trained = {s.patient_id for split in ("train", "val_normal") for s in result.samples(split)}
    assert trained and trained.isdisjoint(s.patient_id for s in not_normal)


def test_rsna_sample_prepares_all_16_dicoms_with_masks_for_opacity_only(
    rsna_sample: RsnaSource,
    rsna_sample_cache: tuple[ImageCache, PrepareReport],
    rsna_sample_boxes: dict[str, list[tuple[float, float, float, float]]],
) -> None:
    cache, report = rsna_sample_cache
    assert (report.requested, report.processed, report.failed) == (16, 16, 0)
    rows = np.arange(16)
    images = cache.images(rows)
    masks = cache.masks(rows)
    assert images.shape == (16, 64, 64) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    # Real radiographs: every image has contrast.
    assert (images.std(axis=(1, 2)) > 0.05).all()
    for sample, mask in zip(cache.samples, masks, strict=True):
        boxes = rsna_sample_boxes.get(sample.patient_id, [])
        assert bool(mask.any()) == (sample.image_class == OPACITY_CLASS)
        if not boxes:
            continue
        # The boxes are in pixels of the 1024 x 1024 original: 16 of them per cached pixel.
        expected = np.zeros((64, 64), bool)
        for x, y, w, h in boxes:
            assert min(x, y) >= 0 and max(x + w, y + h) <= 1024
            x0, y0 = math.floor(x / 16), math.floor(y / 16)
            x1, y1 = math.ceil((x + w) / 16), math.ceil((y + h) / 16)
            expected[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(mask, expected)
        assert not mask.all()
        # The mask covers about the boxes' area (at most one pixel ring more per box).
        area = sum(w * h for _, _, w, h in boxes) / 256
        assert 0.8 * area <= mask.sum() <= area + sum(2 * (w + h) / 16 + 4 for *_, w, h in boxes)


def test_rsna_sample_dicoms_are_1024_pixels(rsna_sample: RsnaSource) -> None:
    opacity = next(s for s in rsna_sample.samples() if s.image_class == OPACITY_CLASS)
    loaded = rsna_sample.load(opacity, 64, ReadOptions())
    assert loaded.meta is not None and loaded.meta.original_size == (1024, 1024)
    assert loaded.mask is not None and loaded.mask.shape == (64, 64)


def test_rsna_medianomaly_needs_the_split_file(rsna_sample: RsnaSource) -> None:
    with pytest.raises(DataSourceError, match=r"ddad_rsna_data\.json"):
        rsna_sample.protocol("medianomaly")


# -- RSNA: the full label files ----------------------------------------------------------------


@pytest.fixture(scope="session")
def rsna_labels(rsna_dir: Path) -> RsnaSource:
    source = open_source(DataConfig(spec=f"rsna:{rsna_dir / 'labels'}"))
    assert isinstance(source, RsnaSource)
    source.samples()  # parse once for the whole session
    return source


@pytest.fixture(scope="session")
def rsna_seed_split(rsna_labels: RsnaSource) -> SplitResult:
    return make_splits(rsna_labels.samples(), rsna_labels.protocol("seed"), seed=0)


def test_rsna_label_files_give_the_class_counts(rsna_labels: RsnaSource) -> None:
    samples = rsna_labels.samples()
    assert len(samples) == len({s.patient_id for s in samples}) == 26684
    assert Counter(s.image_class for s in samples) == {
        NORMAL_CLASS: 8851,
        OPACITY_CLASS: 6012,
        NOT_NORMAL_CLASS: 11821,
    }
    assert sum(s.label == NORMAL for s in samples) == 8851
    # Boxes for every Lung Opacity patient (9,555 box rows) and for no one else.
    with_boxes = [s for s in samples if s.boxes]
    assert {s.image_class for s in with_boxes} == {OPACITY_CLASS}
    assert len(with_boxes) == 6012
    assert sum(len(s.boxes) for s in with_boxes) == 9555


def test_rsna_seed_protocol(rsna_labels: RsnaSource, rsna_seed_split: SplitResult) -> None:
    result = rsna_seed_split
    train = _class_patients(result, "train")
    val_normal = _class_patients(result, "val_normal")
    test = _class_patients(result, "test")
    assert set(train) == set(val_normal) == {NORMAL_CLASS}
    assert not result.samples("val")
    trained = train[NORMAL_CLASS] | val_normal[NORMAL_CLASS]
    assert len(trained) in (6195, 6196)  # 70% of 8,851
    assert len(val_normal[NORMAL_CLASS]) == round(0.1 * len(trained))
    assert len(test[OPACITY_CLASS]) == 6012
    assert len(test[NOT_NORMAL_CLASS]) == 11821
    assert len(test[NORMAL_CLASS]) == 8851 - len(trained)
    assert len(result.entries) == 26684
    assert all(len(splits) == 1 for splits in _patient_splits(result).values())


def test_rsna_seed_protocol_depends_on_the_seed_only(
    rsna_labels: RsnaSource, rsna_seed_split: SplitResult
) -> None:
    def trained(result: SplitResult) -> set[str]:
        return {s.patient_id for s in result.samples("train")}

    again = make_splits(rsna_labels.samples(), rsna_labels.protocol("seed"), seed=0)
    other = make_splits(rsna_labels.samples(), rsna_labels.protocol("seed"), seed=1)
    assert trained(again) == trained(rsna_seed_split)
    assert trained(other) != trained(rsna_seed_split)
    assert len(trained(other)) == len(trained(rsna_seed_split))


def test_rsna_medianomaly_protocol(rsna_dir: Path, rsna_labels: RsnaSource) -> None:
    result = make_splits(rsna_labels.samples(), rsna_labels.protocol("medianomaly"), seed=0)
    split_file = json.loads((rsna_dir / "labels" / "ddad_rsna_data.json").read_text())

    def ids(names: list[str]) -> set[str]:
        return {Path(name).stem for name in names}

    trained = {s.patient_id for split in ("train", "val_normal") for s in result.samples(split)}
    assert len(trained) == 3851
    assert trained == ids(split_file["train"]["0"])
    assert {s.image_class for s in result.samples("train")} == {NORMAL_CLASS}
    assert {s.image_class for s in result.samples("val_normal")} == {NORMAL_CLASS}
    test = _class_patients(result, "test")
    assert {cls: len(p) for cls, p in test.items()} == {NORMAL_CLASS: 1000, OPACITY_CLASS: 1000}
    assert test[NORMAL_CLASS] == ids(split_file["test"]["0"])
    assert test[OPACITY_CLASS] == ids(split_file["test"]["1"])
    assert len(result.entries) == 5851
    assert all(len(splits) == 1 for splits in _patient_splits(result).values())


@pytest.mark.parametrize(
    ("protocol", "abnormal_class", "count"),
    [("opacity", OPACITY_CLASS, 6012), ("not-normal", NOT_NORMAL_CLASS, 11821)],
)
def test_rsna_single_class_protocols(
    rsna_labels: RsnaSource, protocol: str, abnormal_class: str, count: int
) -> None:
    result = make_splits(rsna_labels.samples(), rsna_labels.protocol(protocol), seed=0)
    assert {s.image_class for s in result.samples("test")} == {NORMAL_CLASS, abnormal_class}
    assert len(_class_patients(result, "test")[abnormal_class]) == count
    assert Counter(e.sample.image_class for e in result.entries)[NORMAL_CLASS] == 8851
    assert {s.image_class for s in result.samples("train")} == {NORMAL_CLASS}


def test_rsna_unknown_protocol_is_a_clear_error(rsna_labels: RsnaSource) -> None:
    with pytest.raises(SplitError, match=r"unknown protocol 'sed'.*seed, medianomaly") as err:
        rsna_labels.protocol("sed")
    assert "not-normal" in str(err.value) and "external" in str(err.value)
    assert rsna_labels.protocol().name == "seed"
    external = make_splits(rsna_labels.samples(), rsna_labels.protocol("external"))
    assert {e.split for e in external.entries} == {"test"}


def test_rsna_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="RSNA folder not found"):
        RsnaSource(tmp_path / "missing")
    with pytest.raises(DataSourceError, match=r"stage_2_train_labels\.csv"):
        RsnaSource(tmp_path)
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n")
    (tmp_path / "stage_2_detailed_class_info.csv").write_text("patient,label\np1,Normal\n")
    with pytest.raises(DataSourceError, match=r"stage_2_detailed_class_info.csv: missing column"):
        RsnaSource(tmp_path).samples()


# -- class folders: ZhangLab -------------------------------------------------------------------

ZHANGLAB_PATIENT = re.compile(r"^(NORMAL2-IM-\d+|IM-\d+|person\d+)[-_]")


@pytest.fixture(scope="session")
def zhanglab(zhanglab_dir: Path) -> FolderSource:
    source = open_source(DataConfig(spec=f"folder:{zhanglab_dir}"))
    assert isinstance(source, FolderSource)
    return source


def test_zhanglab_counts_and_labels(zhanglab: FolderSource) -> None:
    samples = zhanglab.samples()
    assert Counter(s.image_class for s in samples) == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert all(s.label == (NORMAL if s.image_class == "NORMAL" else ABNORMAL) for s in samples)
    assert len({s.sample_id for s in samples}) == 5216
    assert not zhanglab.has_masks


def test_zhanglab_patient_ids(zhanglab: FolderSource) -> None:
    by_id = {s.sample_id: s.patient_id for s in zhanglab.samples()}
    assert by_id["NORMAL/IM-0115-0001.jpeg"] == "IM-0115"
    assert by_id["NORMAL/IM-0381-0001.jpeg"] == "IM-0381"
    for name in ("NORMAL2-IM-0395-0001.jpeg", "NORMAL2-IM-0395-0001-0002.jpeg"):
        assert by_id[f"NORMAL/{name}"] == "NORMAL2-IM-0395"
    assert by_id["PNEUMONIA/person1_bacteria_1.jpeg"] == "person1"
    assert by_id["PNEUMONIA/person1_bacteria_2.jpeg"] == "person1"
    # Repeated images of one study, and a numbered virus image, stay with their patient.
    for name in ("IM-0429-0001.jpeg", "IM-0429-0001-0001.jpeg", "IM-0429-0001-0002.jpeg"):
        assert by_id[f"NORMAL/{name}"] == "IM-0429"
    for name in ("person447_bacteria_1932", "person447_virus_921", "person447_virus_921_1"):
        assert by_id[f"PNEUMONIA/{name}.jpeg"] == "person447"
    # Every file: the patient is the IM-xxxx / NORMAL2-IM-xxxx / personN prefix of its name.
    for sample_id, patient in by_id.items():
        match = ZHANGLAB_PATIENT.match(Path(sample_id).stem)
        assert match is not None and match.group(1) == patient, sample_id


def test_zhanglab_holdout_split(zhanglab: FolderSource) -> None:
    result = make_splits(zhanglab.samples(), zhanglab.protocol(), seed=0)
    assert result.protocol.name == "holdout"
    assert len(result.entries) == 5216
    for split in ("train", "val_normal"):
        assert result.samples(split)
        assert {s.image_class for s in result.samples(split)} == {"NORMAL"}
    for split in ("val", "test"):
        assert {s.image_class for s in result.samples(split)} == {"NORMAL", "PNEUMONIA"}
    assert all(len(splits) == 1 for splits in _patient_splits(result).values())
    # The patients a reader would see in the file names never cross splits either.
    true_splits: dict[str, set[str]] = defaultdict(set)
    for entry in result.entries:
        match = ZHANGLAB_PATIENT.match(Path(entry.sample.sample_id).stem)
        assert match is not None
        true_splits[match.group(1)].add(entry.split)
    assert all(len(splits) == 1 for splits in true_splits.values())
    # Patients, not images, are what is split: the pool holds 65% of the normal patients.
    normal = {e.sample.patient_id for e in result.entries if e.sample.label == NORMAL}
    pool = {s.patient_id for split in ("train", "val_normal") for s in result.samples(split)}
    assert len(pool) == round(0.65 * len(normal))


@pytest.mark.parametrize(
    ("stem", "patient"),
    [
        ("IM-0115-0001", "IM-0115"),
        ("IM-0429-0001-0002", "IM-0429"),
        ("NORMAL2-IM-0381-0001", "NORMAL2-IM-0381"),
        ("person1_virus_6", "person1"),
        ("person447_virus_921_1", "person447"),
        ("00000001_000", "00000001"),  # NIH ChestX-ray14: patient_follow-up
        ("chest", "chest"),
    ],
)
def test_default_patient_pattern(stem: str, patient: str) -> None:
    assert patient_id_from_stem(stem, re.compile(DEFAULT_PATIENT_PATTERN)) == patient


def _png(path: Path, value: int, size: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


def test_folder_source_options_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "healthy" / "a_1.png", 10)
    _png(root / "healthy" / "sub" / "a_2.png", 20)
    _png(root / "sick" / "b_1.png", 30)
    (root / "sick" / "notes.txt").write_text("not an image")
    with pytest.raises(DataSourceError, match="normal class"):
        FolderSource(root).samples()
    source = FolderSource(root, normal_classes=["Healthy"], patient_pattern=r"(?P<patient>\w)_")
    samples = {s.sample_id: s for s in source.samples()}
    assert set(samples) == {"healthy/a_1.png", "healthy/sub/a_2.png", "sick/b_1.png"}
    assert samples["healthy/sub/a_2.png"].patient_id == "a"
    assert samples["sick/b_1.png"].label == ABNORMAL
    with pytest.raises(DataSourceError, match="named group"):
        FolderSource(root, patient_pattern=r"(\w+)")
    with pytest.raises(DataSourceError, match="invalid patient pattern"):
        FolderSource(root, patient_pattern=r"(?P<patient>")
    with pytest.raises(DataSourceError, match="image folder not found"):
        FolderSource(tmp_path / "missing")
    (tmp_path / "empty" / "normal").mkdir(parents=True)
    with pytest.raises(DataSourceError, match="no DICOM, PNG or JPEG images"):
        FolderSource(tmp_path / "empty").samples()


# -- CSV manifests -----------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    for i in range(6):
        _png(tmp_path / "images" / f"n{i}.png", 40 * i)
    for i in range(4):
        _png(tmp_path / "images" / f"a{i}.png", 200 + 10 * i)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "images" / "a0_mask.png")
    return tmp_path


def test_manifest_reference_format_with_relative_and_absolute_paths(manifest_dir: Path) -> None:
    absolute = manifest_dir / "images" / "a1.png"
    path = _write_csv(
        manifest_dir / "list.csv",
        ["full_path", "label"],
        [["images/n0.png", 0], ["images/n1.png", "0"], ["images/a0.png", 1], [absolute, 1]],
    )
    source = open_source(DataConfig(spec=f"manifest:{path}"))
    samples = source.samples()
    assert [s.label for s in samples] == [NORMAL, NORMAL, ABNORMAL, ABNORMAL]
    assert [s.image_class for s in samples] == ["normal", "normal", "abnormal", "abnormal"]
    assert samples[0].path == manifest_dir / "images" / "n0.png"
    assert samples[3].path == absolute
    # Without a patient column every image is its own patient.
    assert [s.patient_id for s in samples] == ["n0", "n1", "a0", "a1"]
    assert source.default_protocol == "holdout"
    assert source.protocol_names() == ("holdout",)
    loaded = source.load(samples[1], 32, ReadOptions())
    np.testing.assert_allclose(loaded.image, 40 / 255, atol=1e-6)
    assert loaded.mask is None


def test_manifest_optional_columns(manifest_dir: Path) -> None:
    path = _write_csv(
        manifest_dir / "list.csv",
        ["full_path", "label", "patient_id", "class", "mask_path"],
        [
            ["images/n0.png", "normal", "p1", "", ""],
            ["images/n1.png", "0", "p1", "", ""],
            ["images/a0.png", "pneumonia", "p2", "", "images/a0_mask.png"],
            ["images/a1.png", "1", "p3", "effusion", ""],
        ],
    )
    source = ManifestSource(path)
    samples = source.samples()
    assert [s.patient_id for s in samples] == ["p1", "p1", "p2", "p3"]
    assert [s.image_class for s in samples] == ["normal", "normal", "pneumonia", "effusion"]
    assert [s.label for s in samples] == [NORMAL, NORMAL, ABNORMAL, ABNORMAL]
    assert samples[2].mask_path == manifest_dir / "images" / "a0_mask.png"
    mask = source.load(samples[2], 40, ReadOptions()).mask
    assert mask is not None
    expected = np.zeros((40, 40), bool)
    expected[10:20, 5:15] = True
    np.testing.assert_array_equal(mask, expected)


def test_manifest_fixed_protocol_from_the_split_column(manifest_dir: Path) -> None:
    rows = [[f"images/n{i}.png", 0, "train"] for i in range(4)]
    rows += [["images/n4.png", 0, "val_normal"], ["images/n5.png", 0, "test"]]
    rows += [[f"images/a{i}.png", 1, "val" if i < 2 else "test"] for i in range(4)]
    path = _write_csv(manifest_dir / "list.csv", ["full_path", "label", "split"], rows)
    source = ManifestSource(path)
    assert source.default_protocol == "fixed"
    assert source.protocol_names() == ("fixed", "holdout")
    result = make_splits(source.samples(), source.protocol(), seed=0)
    assert {e.sample.sample_id: e.split for e in result.entries} == {r[0]: r[2] for r in rows}
    # The holdout protocol stays available for the same file.
    holdout = make_splits(source.samples(), source.protocol("holdout"), seed=0)
    assert len(holdout.entries) == 10


def test_manifest_fixed_protocol_carves_val_normal_when_none_is_given(manifest_dir: Path) -> None:
    rows = [[f"images/n{i}.png", 0, "train"] for i in range(6)]
    rows += [[f"images/a{i}.png", 1, "test"] for i in range(4)]
    path = _write_csv(manifest_dir / "list.csv", ["full_path", "label", "split"], rows)
    result = make_splits(ManifestSource(path).samples(), ManifestSource(path).protocol(), seed=0)
    assert len(result.samples("val_normal")) == 1  # 10% of 6, rounded
    assert len(result.samples("train")) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,label\nimages/n0.png,0\n", "missing column.*full_path"),
        ("full_path,diagnosis\nimages/n0.png,0\n", "missing column.*label"),
        ("full_path,label\n", "lists no images"),
        ("full_path,label\nimages/n0.png,0\nimages/a0.png,7\n", r":3: label must be 0, 1"),
        ("full_path,label\nimages/n0.png\n", r":2: label must be 0, 1"),
        ("full_path,label\n,0\n", r":2: empty full_path"),
        ("full_path,label,split\nimages/n0.png,0,training\n", r":2: split must be one of"),
        ("full_path,label\n\udcff\udcfe.png,0\n", "cannot read manifest"),
    ],
)
def test_bad_manifests_name_the_file(manifest_dir: Path, content: str, message: str) -> None:
    path = manifest_dir / "bad list.csv"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataSourceError, match=message) as err:
        source = ManifestSource(path)
        source.samples()
        source.protocol()
    assert str(path) in str(err.value)


def test_manifest_missing_file_and_byte_order_mark(manifest_dir: Path) -> None:
    with pytest.raises(DataSourceError, match=r"manifest not found.*nothing\.csv"):
        ManifestSource(manifest_dir / "nothing.csv")
    path = manifest_dir / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbffull_path,label\r\nimages/n0.png,0\r\n")
    assert [s.sample_id for s in ManifestSource(path).samples()] == ["images/n0.png"]


# -- synthetic phantoms ------------------------------------------------------------------------


def test_synthetic_spec_parsing() -> None:
    spec = parse_synthetic_options("n_train=5, difficulty=0.25,seed=3")
    assert (spec.n_train, spec.difficulty, spec.seed) == (5, 0.25, 3)
    with pytest.raises(DataSourceError, match="n_trian"):
        parse_synthetic_options("n_trian=5")
    with pytest.raises(DataSourceError, match="n_train=five"):
        parse_synthetic_options("n_train=five")
    with pytest.raises(DataSourceError, match="key=value"):
        parse_synthetic_options("n_train")
    assert parse_spec("synthetic") == ("synthetic", "")
    with pytest.raises(DataSourceError, match="unknown data spec"):
        parse_spec("nifti:/x")
    with pytest.raises(DataSourceError, match="needs a path"):
        parse_spec("rsna:")


def test_synthetic_source_splits_and_masks() -> None:
    source = open_source(
        DataConfig(spec="synthetic:n_train=6,n_val_normal=2,n_test_normal=3,n_test_abnormal=6")
    )
    assert isinstance(source, SyntheticSource)
    result = make_splits(source.samples(), source.protocol(), seed=0)
    summary = result.summary()
    assert summary["train"] == {"normal": {"patients": 6, "images": 6}}
    assert summary["val_normal"] == {"normal": {"patients": 2, "images": 2}}
    test = result.samples("test")
    assert sum(s.label == NORMAL for s in test) == 3
    abnormal = [s for s in test if s.label == ABNORMAL]
    assert len({s.image_class for s in abnormal}) == 6  # six anomaly types in turn
    for sample in test:
        loaded = source.load(sample, 48, ReadOptions())
        assert loaded.image.shape == (48, 48) and loaded.image.dtype == np.float32
        assert loaded.image.min() >= 0.0 and loaded.image.max() <= 1.0
        if sample.label == ABNORMAL:
            assert loaded.mask is not None and loaded.mask.any() and not loaded.mask.all()
        else:
            assert loaded.mask is None
    # Rendering is a pure function of the spec: a new source gives the same pixels.
    again = SyntheticSource(parse_synthetic_options("n_train=6,n_val_normal=2"))
    first = source.samples()[0]
    np.testing.assert_array_equal(
        source.load(first, 48, ReadOptions()).image, again.load(first, 48, ReadOptions()).image
    )


def test_synthetic_identity_follows_the_spec() -> None:
    a = SyntheticSource(parse_synthetic_options("n_train=4"))
    b = SyntheticSource(parse_synthetic_options("n_train=4,difficulty=0.9"))
    assert a.identity() == SyntheticSource(parse_synthetic_options("n_train=4")).identity()
    assert a.identity() != b.identity()


# -- split folders: the dataset's own train / test-dev / test split ----------------------------


def _split_tree(root: Path) -> Path:
    """train/ (normal and abnormal), test-dev/ and test/, patient numbers reused across them."""
    for split in ("train", "test-dev", "test"):
        for i in range(10 if split == "train" else 3):
            _png(root / split / "NORMAL" / f"IM-{i:04d}-0001.png", 10 + i)
        for i in range(4):
            _png(root / split / "PNEUMONIA" / f"person{i}_virus_{i}.png", 200 + i)
    return root


def test_split_folders_keep_the_datasets_own_split(tmp_path: Path) -> None:
    root = _split_tree(tmp_path / "zl")
    source = FolderSource(root)
    assert source.split_folders == {"test": "test", "test-dev": "val", "train": "train"}
    assert source.default_protocol == "official"
    assert source.protocol_names() == ("official",)
    result = make_splits(source.samples(), source.protocol(), seed=0)
    by_split = defaultdict(list)
    for entry in result.entries:
        by_split[entry.split].append(entry.sample)
    # Abnormal train/ images take no part; every other image keeps its folder's split.
    assert all(s.is_normal for s in by_split["train"] + by_split["val_normal"])
    assert len(by_split["train"]) + len(by_split["val_normal"]) == 10
    assert len(by_split["val_normal"]) == 1
    assert {s.sample_id.split("/")[0] for s in by_split["val"]} == {"test-dev"}
    assert {s.sample_id.split("/")[0] for s in by_split["test"]} == {"test"}
    assert len(by_split["val"]) == len(by_split["test"]) == 7
    # person0 of test-dev/ and person0 of test/ are two patients, kept apart by their folder.
    patients = {s.patient_id for s in by_split["val"]}
    assert "test-dev/person0" in patients and "test-dev/IM-0000" in patients
    assert all(len(splits) == 1 for splits in _patient_splits(result).values())


def test_a_class_folder_root_has_no_official_split(tmp_path: Path) -> None:
    root = _split_tree(tmp_path / "zl")
    source = FolderSource(root / "train")
    assert source.split_folders == {}
    assert source.default_protocol == "holdout"
    with pytest.raises(SplitError, match="unknown protocol 'official'"):
        source.protocol("official")


def test_zhanglab_official_split(zhanglab_dir: Path) -> None:
    source = open_source(DataConfig(spec=f"folder:{zhanglab_dir.parent}"))
    if not (zhanglab_dir.parent / "test-dev").is_dir():
        pytest.skip("the ZhangLab test-dev folder is not there")
    result = make_splits(source.samples(), source.protocol(), seed=0)
    summary = result.summary()
    assert summary["train"]["NORMAL"]["images"] + summary["val_normal"]["NORMAL"]["images"] == 1341
    assert summary["val"]["NORMAL"] == {"patients": 112, "images": 114}
    assert summary["val"]["PNEUMONIA"] == {"patients": 101, "images": 210}
    assert "PNEUMONIA" not in summary["train"]
