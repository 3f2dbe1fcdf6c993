"""Synthetic chest X-ray phantoms: determinism, masks, anomalies on top of the normal patient,
difficulty, the dataset factory and the gallery figure."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cxr_anomaly.data.phantom_gallery import save_phantom_gallery
from cxr_anomaly.data.phantoms import (
    ANOMALY_TYPES,
    SPLITS,
    Phantom,
    SyntheticItem,
    SyntheticSpec,
    body_mask,
    make_phantom,
    render_item,
    render_items,
    synthetic_items,
)

SIZES = (32, 64, 128)
SEEDS = (0, 7, 123)
KINDS: tuple[str | None, ...] = (None, *ANOMALY_TYPES)
# Sum of make_phantom(64, 0).image. Update it (and say why) when the generator changes on purpose:
# every dataset made from phantoms changes with it.
GOLDEN_SUM_64_SEED0 = 2104.5225


def _change(
    size: int, seed: int, anomaly: str, difficulty: float = 0.5
) -> tuple[np.ndarray, Phantom]:
    """``|abnormal - normal|`` for one seed (float64), and the abnormal phantom."""
    abnormal = make_phantom(size, seed, anomaly, difficulty)
    normal = make_phantom(size, seed)
    return np.abs(abnormal.image.astype(np.float64) - normal.image), abnormal


def test_anomaly_type_names() -> None:
    assert ANOMALY_TYPES == (
        "opacity",
        "nodule",
        "effusion",
        "cardiomegaly",
        "pneumothorax",
        "foreign_object",
    )


@pytest.mark.parametrize("anomaly", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_same_seed_gives_same_image_bit_for_bit(size: int, anomaly: str | None) -> None:
    first = make_phantom(size, 42, anomaly)
    second = make_phantom(size, 42, anomaly)
    assert first.image.tobytes() == second.image.tobytes()
    assert np.array_equal(first.mask, second.mask)
    assert first.anomaly == second.anomaly == anomaly


def test_golden_value_pins_the_generator() -> None:
    """A fixed seed gives a known image sum: any change to the generator changes the dataset."""
    image = make_phantom(64, 0).image
    assert float(image.astype(np.float64).sum()) == pytest.approx(GOLDEN_SUM_64_SEED0, rel=1e-4)


@pytest.mark.parametrize("size", SIZES)
def test_different_seeds_give_visibly_different_images(size: int) -> None:
    images = [make_phantom(size, seed).image for seed in range(6)]
    for a, b in itertools.combinations(images, 2):
        assert np.abs(a - b).mean() > 0.02


@pytest.mark.parametrize("anomaly", KINDS)
@pytest.mark.parametrize("size", (32, 64, 128, 256))
def test_image_is_float32_in_unit_range(size: int, anomaly: str | None) -> None:
    phantom = make_phantom(size, 5, anomaly)
    assert phantom.image.shape == (size, size)
    assert phantom.image.dtype == np.float32
    assert phantom.mask.shape == (size, size)
    assert phantom.mask.dtype == np.bool_
    assert phantom.image.min() >= 0.0 and phantom.image.max() <= 1.0
    assert phantom.image.std() > 0.1  # a radiograph, not a flat field


def test_anatomy_is_dark_outside_the_body_and_the_lungs_darker_than_the_mediastinum() -> None:
    for seed in SEEDS:
        image = make_phantom(128, seed).image
        body = body_mask(128, seed)
        assert (~body).sum() > 0.02 * body.size  # some background is visible
        assert image[~body].mean() < image[body].mean() - 0.2
        # Mid-lung columns (about a quarter in from each side) vs. the central column.
        rows = slice(40, 80)
        lungs = np.concatenate([image[rows, 28:40], image[rows, 88:100]], axis=1).mean()
        centre = image[rows, 60:68].mean()
        assert lungs < centre - 0.1


@pytest.mark.parametrize("size", SIZES)
def test_normal_images_have_an_empty_mask(size: int) -> None:
    for seed in SEEDS:
        phantom = make_phantom(size, seed)
        assert phantom.anomaly is None
        assert not phantom.mask.any()


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
@pytest.mark.parametrize("size", SIZES)
def test_abnormal_mask_is_non_empty_and_inside_the_body(size: int, anomaly: str) -> None:
    for seed in SEEDS:
        phantom = make_phantom(size, seed, anomaly)
        assert phantom.anomaly == anomaly
        assert phantom.mask.any()
        assert not (phantom.mask & ~body_mask(size, seed)).any()
        assert phantom.mask.mean() < 0.25  # local, not the whole image


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
@pytest.mark.parametrize("size", SIZES)
def test_anomaly_changes_pixels_inside_its_mask_far_more_than_outside(
    size: int, anomaly: str
) -> None:
    for seed in SEEDS:
        change, abnormal = _change(size, seed, anomaly)
        mask = abnormal.mask
        inside, outside = change[mask].mean(), change[~mask].mean()
        assert inside > 0.01
        assert inside > 20.0 * outside
        # The anomaly sits on top of the same patient: beyond a blur-width margin around the
        # mask the image is all but untouched.
        near = ndimage.binary_dilation(mask, iterations=2)
        assert change[near].sum() >= 0.95 * change.sum()
        assert change[~ndimage.binary_dilation(mask, iterations=4)].max() < 0.02


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
def test_harder_difficulty_means_fainter_anomalies(anomaly: str) -> None:
    for size, seed in ((32, 3), (64, 11), (128, 4)):
        normal = make_phantom(size, seed).image
        strengths = []
        for difficulty in (0.0, 0.25, 0.5, 0.75, 1.0):
            phantom = make_phantom(size, seed, anomaly, difficulty)
            strengths.append(float(np.abs(phantom.image - normal)[phantom.mask].mean()))
        assert all(a > b for a, b in itertools.pairwise(strengths)), strengths


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
def test_harder_difficulty_means_smaller_total_change(anomaly: str) -> None:
    easy, _ = _change(64, 9, anomaly, 0.0)
    hard, _ = _change(64, 9, anomaly, 1.0)
    assert hard.sum() < 0.7 * easy.sum()


def test_every_anomaly_type_differs_from_the_others() -> None:
    masks = {kind: make_phantom(64, 1, kind).mask for kind in ANOMALY_TYPES}
    for a, b in itertools.combinations(ANOMALY_TYPES, 2):
        assert not np.array_equal(masks[a], masks[b])


@pytest.mark.parametrize("size", (0, 16, 31, 257, 512))
def test_size_out_of_range_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        make_phantom(size, 0)


def test_non_integer_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="size"):
        make_phantom(64.0, 0)  # type: ignore[arg-type]


def test_unknown_anomaly_names_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        make_phantom(64, 0, "pneumonia")
    for kind in ANOMALY_TYPES:
        assert kind in str(info.value)


@pytest.mark.parametrize("difficulty", (-0.1, 1.01, float("nan")))
def test_difficulty_out_of_range_is_rejected(difficulty: float) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        make_phantom(64, 0, "nodule", difficulty)


def test_body_mask_matches_the_phantom_and_rejects_bad_sizes() -> None:
    body = body_mask(64, 3)
    assert body.shape == (64, 64) and body.dtype == np.bool_
    assert 0.5 < body.mean() < 0.98
    with pytest.raises(ValueError):
        body_mask(20, 3)


def test_synthetic_items_counts_splits_and_unique_seeds() -> None:
    spec = SyntheticSpec()
    items = synthetic_items(spec)
    counts = Counter(item.split for item in items)
    assert counts == {"train": 1000, "val_normal": 200, "test": 400}
    assert set(counts) == set(SPLITS)
    assert len({item.seed for item in items}) == len(items)
    assert len({item.item_id for item in items}) == len(items)
    assert all(item.item_id.startswith(f"{item.split}-") for item in items)
    assert all(item.anomaly is None for item in items if item.split != "test")
    test = [item for item in items if item.split == "test"]
    assert sum(item.anomaly is None for item in test) == 200
    per_type = Counter(item.anomaly for item in test if item.anomaly is not None)
    assert set(per_type) == set(ANOMALY_TYPES)
    assert max(per_type.values()) - min(per_type.values()) <= 1
    # Normal and abnormal test images are interleaved, not in two blocks.
    first_half = test[: len(test) // 2]
    assert 50 < sum(item.anomaly is None for item in first_half) < 150


def test_synthetic_items_are_determined_by_the_spec() -> None:
    small = SyntheticSpec(n_train=20, n_val_normal=5, n_test_normal=6, n_test_abnormal=12)
    assert synthetic_items(small) == synthetic_items(small)
    other_seed = synthetic_items(SyntheticSpec(n_train=20, seed=1))
    assert {i.seed for i in synthetic_items(small)}.isdisjoint({i.seed for i in other_seed})
    # More training images do not change which patients are in the test set.
    more_train = SyntheticSpec(n_train=50, n_val_normal=5, n_test_normal=6, n_test_abnormal=12)
    test_of = lambda spec: [i for i in synthetic_items(spec) if i.split == "test"]  # noqa: E731
    assert test_of(more_train) == test_of(small)


def test_synthetic_items_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        synthetic_items(SyntheticSpec(n_train=-1))


def test_render_item_is_make_phantom_of_the_item_seed() -> None:
    items = synthetic_items(
        SyntheticSpec(n_train=2, n_val_normal=1, n_test_normal=1, n_test_abnormal=6)
    )
    for item in items:
        rendered = render_item(item, 48, 0.3)
        expected = make_phantom(48, item.seed, item.anomaly, 0.3)
        assert rendered.image.tobytes() == expected.image.tobytes()
        assert np.array_equal(rendered.mask, expected.mask)
        assert rendered.anomaly == item.anomaly
        assert rendered.mask.any() == (item.anomaly is not None)


def test_render_items_stacks_images_and_masks() -> None:
    items = synthetic_items(
        SyntheticSpec(n_train=2, n_val_normal=0, n_test_normal=1, n_test_abnormal=2)
    )
    images, masks = render_items(items, 32, 0.5)
    assert images.shape == masks.shape == (5, 32, 32)
    assert images.dtype == np.float32 and masks.dtype == np.bool_
    for i, item in enumerate(items):
        assert np.array_equal(images[i], render_item(item, 32, 0.5).image)
        assert masks[i].any() == (item.anomaly is not None)


def test_item_is_a_plain_frozen_record() -> None:
    item = SyntheticItem("test-00001", "test", 5, "nodule")
    with pytest.raises(AttributeError):
        item.seed = 6  # type: ignore[misc]
    assert not item.is_normal
    assert SyntheticItem("train-00000", "train", 1, None).is_normal


def test_gallery_is_written_atomically_as_a_small_png(tmp_path: Path) -> None:
    target = tmp_path / "figures" / "phantoms.png"
    assert save_phantom_gallery(target, size=64, seed=3) == target
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 300_000
    assert [p.name for p in target.parent.iterdir()] == ["phantoms.png"]
