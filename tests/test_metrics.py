"""Image- and pixel-level metrics: hand-computed values, scikit-learn agreement, bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from cxr_anomaly.evaluation import metrics

# ------------------------------------------------------------------------------------------------
# AUROC / AP / ROC
# ------------------------------------------------------------------------------------------------


def test_auroc_hand_computed_with_a_tie() -> None:
    # Normals {0.1, 0.4}, abnormals {0.4, 0.8}: the 4 (abnormal, normal) pairs are
    #   (0.4, 0.1) -> 1, (0.4, 0.4) -> tie -> 1/2, (0.8, 0.1) -> 1, (0.8, 0.4) -> 1
    # so AUROC = (1 + 0.5 + 1 + 1) / 4 = 3.5 / 4 = 0.875.
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(0.875)


def test_auroc_hand_computed_extremes() -> None:
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # All scores tied: every pair is a tie -> 1/2.
    assert metrics.auroc([0, 1, 0, 1, 1], [0.5] * 5) == pytest.approx(0.5)
    # bool labels are accepted.
    assert metrics.auroc(np.array([False, True]), [0.0, 1.0]) == 1.0


def test_average_precision_hand_computed_with_a_tie() -> None:
    # Same data. Thresholds (descending): 0.8 -> TP 1, FP 0: P = 1, R = 1/2;
    # 0.4 -> TP 2, FP 1: P = 2/3, R = 1.  AP = (1/2 - 0) * 1 + (1 - 1/2) * 2/3 = 5/6.
    assert metrics.average_precision([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("decimals", [None, 1])
def test_image_metrics_agree_with_sklearn(seed: int, decimals: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + 0.7 * labels
    if decimals is not None:  # many ties
        scores = np.round(scores, decimals)
    assert metrics.auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert metrics.average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores)
    )
    fpr, tpr, thr = metrics.roc_curve(labels, scores)
    assert fpr[0] == 0.0 and tpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert skm.auc(fpr, tpr) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert np.all(np.diff(thr) < 0)


# ------------------------------------------------------------------------------------------------
# Sensitivity at specificity
# ------------------------------------------------------------------------------------------------


def test_sensitivity_at_specificity_hand_cases() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.9, 0.5, 0.6, 0.8, 0.95]
    # Operating points (t: TP, FP, specificity):
    #   t = 0.95: 1, 0, 1.00 | t = 0.9: 1, 1, 0.75 | t = 0.5: 4, 1, 0.75 | t = 0.3: 4, 2, 0.50
    assert metrics.sensitivity_at_specificity(labels, scores, 1.0) == pytest.approx(0.25)
    assert metrics.sensitivity_at_specificity(labels, scores, 0.8) == pytest.approx(0.25)
    assert metrics.sensitivity_at_specificity(labels, scores, 0.75) == pytest.approx(1.0)
    assert metrics.sensitivity_at_specificity(labels, scores, 0.0) == pytest.approx(1.0)


def test_sensitivity_at_specificity_does_not_split_ties() -> None:
    # Normals {0.5, 0.1}, abnormals {0.5, 0.9}. At t = 0.9: TPR 1/2, spec 1. At t = 0.5 the tie
    # flags both 0.5s: TPR 1, spec 1/2. A spec >= 0.6 cannot take the tied abnormal alone.
    labels, scores = [0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9]
    assert metrics.sensitivity_at_specificity(labels, scores, 0.6) == pytest.approx(0.5)
    assert metrics.sensitivity_at_specificity(labels, scores, 0.5) == pytest.approx(1.0)


def test_sensitivity_at_specificity_zero_when_only_infinite_threshold_qualifies() -> None:
    # The top score is a normal: any finite threshold flags it, spec < 1.
    assert metrics.sensitivity_at_specificity([0, 1, 0], [0.9, 0.5, 0.1], 1.0) == 0.0


def test_sensitivity_at_specificity_exact_boundary_in_floating_point() -> None:
    # 10 normals, 1 false positive -> spec 1 - 1/10, which must count as >= 0.9.
    labels = [0] * 10 + [1] * 10
    scores = [*range(9), 100] + [50 + i for i in range(10)]
    assert metrics.sensitivity_at_specificity(labels, scores, 0.9) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sensitivity_at_specificity_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=150)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=150) + labels, 1)
    for target in (0.5, 0.9, 0.95):
        best = 0.0
        for t in np.unique(scores):
            pred = scores >= t
            spec = np.mean(~pred[labels == 0])
            if spec >= target:
                best = max(best, np.mean(pred[labels == 1]))
        assert metrics.sensitivity_at_specificity(labels, scores, target) == pytest.approx(best)


# ------------------------------------------------------------------------------------------------
# Per-class AUROC
# ------------------------------------------------------------------------------------------------


def test_per_class_auroc_each_class_vs_all_normals() -> None:
    labels = [0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.15, 0.05]
    # Normal class names do not matter ("odd" is still a normal image).
    classes = ["Normal", "Normal", "odd", "A", "A", "B", "B"]
    out = metrics.per_class_auroc(labels, scores, classes)
    assert list(out) == ["A", "B"]
    assert out["A"] == pytest.approx(1.0)
    # B = {0.15, 0.05} vs normals {0.1, 0.2, 0.3}: 0.15 beats 1 of 3, 0.05 beats 0 -> 1/6.
    assert out["B"] == pytest.approx(1 / 6)


def test_per_class_auroc_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="one name per image"):
        metrics.per_class_auroc([0, 1], [0.1, 0.2], ["Normal"])


# ------------------------------------------------------------------------------------------------
# Bootstrap
# ------------------------------------------------------------------------------------------------


def _sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.4).astype(int)
    labels[:2] = [0, 1]
    return labels, rng.normal(size=n) + 1.0 * labels


def test_bootstrap_ci_contains_point_and_narrows_with_more_patients() -> None:
    rng = np.random.default_rng(0)
    small_y, small_s = _sample(rng, 60)
    big_y, big_s = _sample(rng, 600)
    lo, hi = metrics.bootstrap_ci(small_y, small_s, np.arange(60), n_boot=500)
    assert lo <= metrics.auroc(small_y, small_s) <= hi
    blo, bhi = metrics.bootstrap_ci(big_y, big_s, np.arange(600), n_boot=500)
    assert blo <= metrics.auroc(big_y, big_s) <= bhi
    # Width shrinks like 1/sqrt(n): about 0.32x for 10x the patients.
    assert (bhi - blo) < 0.6 * (hi - lo)


def test_bootstrap_ci_resamples_patients_not_images() -> None:
    rng = np.random.default_rng(1)
    y, s = _sample(rng, 80)
    single = metrics.bootstrap_ci(y, s, np.arange(80), n_boot=400)
    # Each patient's image 5 times, under one group id.
    y5, s5, g5 = np.repeat(y, 5), np.repeat(s, 5), np.repeat(np.arange(80), 5)
    grouped = metrics.bootstrap_ci(y5, s5, g5, n_boot=400)
    ignoring_groups = metrics.bootstrap_ci(y5, s5, None, n_boot=400)
    w_single, w_grouped = single[1] - single[0], grouped[1] - grouped[0]
    w_naive = ignoring_groups[1] - ignoring_groups[0]
    assert w_grouped == pytest.approx(w_single, rel=0.2)
    # Treating the copies as independent patients is (wrongly) about sqrt(5) narrower.
    assert w_naive < 0.7 * w_grouped


def test_bootstrap_ci_string_groups_and_determinism() -> None:
    rng = np.random.default_rng(2)
    y, s = _sample(rng, 50)
    groups = [f"patient-{i // 2}" for i in range(50)]
    a = metrics.bootstrap_ci(y, s, groups, n_boot=200, seed=7)
    b = metrics.bootstrap_ci(y, s, groups, n_boot=200, seed=7)
    c = metrics.bootstrap_ci(y, s, groups, n_boot=200, seed=8)
    assert a == b
    assert a != c
    lo, hi = metrics.bootstrap_ci(y, s, groups, metric=metrics.average_precision, n_boot=200)
    assert 0.0 <= lo <= metrics.average_precision(y, s) <= hi <= 1.0


def test_bootstrap_ci_skips_single_class_resamples() -> None:
    # One abnormal among 20: about a third of the resamples miss it and must be skipped.
    y = np.r_[np.zeros(20, int), 1]
    s = np.r_[np.linspace(0, 1, 20), 0.95]
    lo, hi = metrics.bootstrap_ci(y, s, None, n_boot=200)
    assert 0.0 <= lo <= hi <= 1.0


def test_bootstrap_ci_validation() -> None:
    with pytest.raises(ValueError, match="one id per image"):
        metrics.bootstrap_ci([0, 1], [0.1, 0.2], [1, 2, 3])
    with pytest.raises(ValueError, match="confidence"):
        metrics.bootstrap_ci([0, 1], [0.1, 0.2], None, confidence=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.bootstrap_ci([0, 1], [0.1, 0.2], None, n_boot=0)


def test_paired_difference_is_narrower_than_separate_intervals() -> None:
    # Two scores sharing most of their signal: b is a plus a little independent noise.
    rng = np.random.default_rng(4)
    y, a = _sample(rng, 300)
    b = a + rng.normal(0.0, 0.3, a.size)
    groups = np.arange(300) // 2
    diff, (lo, hi) = metrics.paired_difference_ci(y, a, b, groups, n_boot=400)
    assert diff == pytest.approx(metrics.auroc(y, a) - metrics.auroc(y, b))
    assert lo <= diff <= hi
    a_lo, a_hi = metrics.bootstrap_ci(y, a, groups, n_boot=400)
    b_lo, b_hi = metrics.bootstrap_ci(y, b, groups, n_boot=400)
    # The paired interval is much narrower than the gap the two separate intervals allow.
    assert hi - lo < 0.6 * ((a_hi - b_lo) - (a_lo - b_hi))


def test_paired_difference_of_a_score_with_itself_is_exactly_zero() -> None:
    rng = np.random.default_rng(5)
    y, a = _sample(rng, 80)
    assert metrics.paired_difference_ci(y, a, a, None, n_boot=100) == (0.0, (0.0, 0.0))


def test_paired_difference_uses_the_same_resamples_as_bootstrap_ci() -> None:
    # Against a constant score (AUROC 0.5 on every resample) the paired interval is the
    # single-score interval shifted by 0.5, draw for draw.
    rng = np.random.default_rng(6)
    y, a = _sample(rng, 60)
    groups = np.arange(60) // 3
    _, (lo, hi) = metrics.paired_difference_ci(y, a, np.zeros(60), groups, n_boot=200, seed=3)
    s_lo, s_hi = metrics.bootstrap_ci(y, a, groups, n_boot=200, seed=3)
    assert (lo, hi) == pytest.approx((s_lo - 0.5, s_hi - 0.5))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.paired_difference_ci(y, a, a[:-1], groups)


def test_paired_mean_difference_averages_the_pairs_on_the_same_draws() -> None:
    rng = np.random.default_rng(7)
    y, a = _sample(rng, 120)
    b, c = a + rng.normal(0.0, 0.5, a.size), a + rng.normal(0.0, 0.8, a.size)
    groups = np.arange(120) // 2
    single = metrics.paired_difference_ci(y, a, c, groups, n_boot=200)
    # A pair repeated is the pair itself: the runs are scored on the same resamples.
    assert metrics.paired_mean_difference_ci(y, [a, a], [c, c], groups, n_boot=200) == single
    mean, (lo, hi) = metrics.paired_mean_difference_ci(y, [a, b], [c, c], groups, n_boot=200)
    other = metrics.paired_difference_ci(y, b, c, groups, n_boot=200)
    assert mean == pytest.approx((single[0] + other[0]) / 2)
    assert lo <= mean <= hi
    with pytest.raises(ValueError, match="pair up"):
        metrics.paired_mean_difference_ci(y, [a, b], [c], groups)
    with pytest.raises(ValueError, match="pair up"):
        metrics.paired_mean_difference_ci(y, [], [], groups)


def test_image_metrics_bundle() -> None:
    rng = np.random.default_rng(3)
    y, s = _sample(rng, 120)
    classes = np.where(y == 1, np.where(np.arange(120) % 2 == 0, "Opacity", "Other"), "Normal")
    result = metrics.image_metrics(y, s, np.arange(120) // 2, classes, n_boot=200)
    assert result.auroc == pytest.approx(skm.roc_auc_score(y, s))
    assert result.ap == pytest.approx(skm.average_precision_score(y, s))
    assert result.auroc_ci[0] <= result.auroc <= result.auroc_ci[1]
    assert result.ap_ci[0] <= result.ap <= result.ap_ci[1]
    assert result.sens_at_95spec <= result.sens_at_90spec
    assert (result.n_normal, result.n_abnormal) == (int((y == 0).sum()), int((y == 1).sum()))
    assert set(result.per_class) == {"Opacity", "Other"}
    d = json.loads(json.dumps(result.to_dict()))
    assert d["auroc_ci"] == list(result.auroc_ci)
    assert metrics.image_metrics(y, s, None, None, n_boot=50).per_class == {}


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 0, 0], [0.1, 0.2, 0.3], "both classes"),
        ([1, 1], [0.1, 0.2], "both classes"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 2], [0.1, 0.2], "0 \\(normal\\) or 1"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_image_metric_validation(labels: list, scores: list, match: str) -> None:
    for fn in (metrics.auroc, metrics.average_precision, metrics.roc_curve):
        with pytest.raises(ValueError, match=match):
            fn(labels, scores)


def test_specificity_out_of_range() -> None:
    with pytest.raises(ValueError, match="specificity"):
        metrics.sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.2)


# ------------------------------------------------------------------------------------------------
# Pixel level
# ------------------------------------------------------------------------------------------------


def _masks() -> np.ndarray:
    """4 images of 24x24: two with a lesion, two normal (all-zero masks)."""
    masks = np.zeros((4, 24, 24), bool)
    masks[0, 4:12, 5:13] = True
    masks[1, 14:22, 10:20] = True
    return masks


def test_perfect_map_scores_one() -> None:
    masks = _masks()
    maps = masks.astype(np.float32)
    assert metrics.pixel_auroc(maps, masks) == 1.0
    assert metrics.pixel_ap(maps, masks) == pytest.approx(1.0)
    dice, threshold = metrics.best_dice(maps, masks)
    assert dice == pytest.approx(1.0)
    assert 0.0 < threshold <= 1.0
    assert metrics.pointing_game(maps, masks) == 1.0


def test_inverted_map_scores_zero_auroc() -> None:
    masks = _masks()
    assert metrics.pixel_auroc((~masks).astype(float), masks) == 0.0


def test_best_dice_half_overlap() -> None:
    # Mask: rows 4-7, cols 4-11 (32 px). Map = 1 on rows 4-7, cols 8-15 (32 px, 16 shared).
    # Any threshold in (0, 1] predicts exactly the map's 32 px: Dice = 2*16 / (32 + 32) = 0.5.
    # Threshold <= 0 predicts every pixel of both images: 2*32 / (512 + 32) < 0.5.
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:12] = True
    maps = np.zeros((2, 16, 16))
    maps[0, 4:8, 8:16] = 1.0
    dice, threshold = metrics.best_dice(maps, masks)
    assert dice == pytest.approx(0.5)
    assert 0.0 < threshold <= 1.0


def test_best_dice_counts_false_positives_on_normal_images() -> None:
    # Perfect on the lesion image, but the normal image lights up as much: 2*32/(32+32+32).
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:12] = True
    maps = np.zeros((2, 16, 16))
    maps[0][masks[0]] = 1.0
    maps[1, 0:4, 0:8] = 1.0
    assert metrics.best_dice(maps, masks)[0] == pytest.approx(2 / 3)


def test_best_dice_robust_to_an_outlier() -> None:
    # Lesion pixels in [1, 1.4], background in [0, 0.4], plus one huge value inside a lesion. An
    # evenly spaced grid over [0, 1e6] has no threshold between 0.4 and 1 (its step is ~1e4);
    # the quantile half of the grid still cuts near the gap.
    rng = np.random.default_rng(0)
    masks = _masks()
    maps = np.where(masks, 1.0, 0.0) + 0.4 * rng.random(masks.shape)
    maps[0, 4, 5] = 1e6
    assert metrics.best_dice(maps, masks)[0] > 0.95


def test_pointing_game_hits_and_misses() -> None:
    masks = _masks()
    maps = np.zeros(masks.shape)
    maps[0][masks[0]] = 1.0  # hit
    maps[1, 2:6, 2:6] = 1.0  # peak outside the mask: miss
    maps[2, 10, 10] = 5.0  # normal images do not count
    assert metrics.pointing_game(maps, masks, sigma=2.0) == pytest.approx(0.5)
    assert metrics.pointing_game(maps, masks, sigma=0.0) == pytest.approx(0.5)


def test_pointing_game_smoothing_ignores_a_single_hot_pixel() -> None:
    masks = np.zeros((1, 32, 32), bool)
    masks[0, 8:20, 8:20] = True
    maps = np.zeros((1, 32, 32))
    maps[0][masks[0]] = 1.0
    maps[0, 28, 28] = 3.0  # one noisy pixel, higher than the lesion
    assert metrics.pointing_game(maps, masks, sigma=0.0) == 0.0
    assert metrics.pointing_game(maps, masks, sigma=2.0) == 1.0


def test_pixel_metrics_bundle_and_channel_axis() -> None:
    rng = np.random.default_rng(1)
    masks = _masks()
    maps = masks + 0.8 * rng.random(masks.shape)
    result = metrics.pixel_metrics(maps[:, None], masks[:, None])
    assert result.n_images == 4 and result.n_annotated == 2
    assert result.pixel_auroc == pytest.approx(
        skm.roc_auc_score(masks.reshape(-1), maps.reshape(-1))
    )
    assert result.pixel_ap == pytest.approx(
        skm.average_precision_score(masks.reshape(-1), maps.reshape(-1))
    )
    assert 0.0 < result.best_dice <= 1.0
    assert json.loads(json.dumps(result.to_dict()))["n_annotated"] == 2


def test_pixel_subsampling_is_deterministic_and_close() -> None:
    rng = np.random.default_rng(2)
    masks = np.zeros((8, 64, 64), bool)
    masks[:, 20:40, 20:40] = True
    maps = masks + rng.normal(scale=0.8, size=masks.shape)
    full = metrics.pixel_auroc(maps, masks)
    sub = metrics.pixel_auroc(maps, masks, max_pixels=5000)
    assert sub == metrics.pixel_auroc(maps, masks, max_pixels=5000)
    assert sub != full
    assert sub == pytest.approx(full, abs=0.03)


def test_pixel_metric_validation() -> None:
    masks = _masks()
    maps = masks.astype(float)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.pixel_auroc(maps[:, :10], masks)
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.pixel_auroc(bad, masks)
    empty = np.zeros_like(masks)
    with pytest.raises(ValueError, match="both classes"):
        metrics.pixel_auroc(maps, empty)
    with pytest.raises(ValueError, match="no abnormal pixel"):
        metrics.best_dice(maps, empty)
    with pytest.raises(ValueError, match="non-empty mask"):
        metrics.pointing_game(maps, empty)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.pixel_auroc(maps[0], masks[0])


def test_mean_ci_resamples_patients_and_brackets_the_mean() -> None:
    hits = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 1], float)
    patients = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
    low, high = metrics.mean_ci(hits, patients, n_boot=2000)
    assert low <= hits.mean() <= high
    assert metrics.mean_ci(np.ones(10), patients, n_boot=200) == (1.0, 1.0)
    # Resampling patients, not images: a patient's two images move together, so hits that
    # agree within patients give a wider interval than the same hits split across patients.
    paired = metrics.mean_ci(np.repeat([1.0, 0.0, 1.0, 0.0, 1.0], 2), patients, n_boot=4000)
    split = metrics.mean_ci(np.tile([1.0, 0.0], 5), patients, n_boot=4000)
    assert paired[1] - paired[0] > split[1] - split[0]
    with pytest.raises(ValueError, match="one group per value"):
        metrics.mean_ci(hits, patients[:-1])


def test_pointing_hits_are_per_annotated_image() -> None:
    maps = np.zeros((3, 8, 8))
    masks = np.zeros((3, 8, 8), bool)
    maps[0, 2, 2] = 1.0
    masks[0, 2, 2] = True  # hit
    maps[1, 6, 6] = 1.0
    masks[1, 1, 1] = True  # miss
    hits = metrics.pointing_hits(maps, masks, sigma=0)  # image 2 has no mask: not counted
    assert hits.tolist() == [True, False]
    assert metrics.pointing_game(maps, masks, sigma=0) == 0.5


def test_pixel_ap_interval_brackets_the_pooled_ap_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((80, 12, 12))
    masks = np.zeros((80, 12, 12), bool)
    masks[40:, 3:7, 3:7] = True
    maps[masks] += 0.4
    many = [f"p{i}" for i in range(80)]
    ap = metrics.pixel_ap(maps, masks)
    low, high = metrics.pixel_ap_ci([maps], [masks], [many], n_boot=200)
    assert low < ap < high
    assert metrics.pixel_ap_ci([maps], [masks], [many], n_boot=200) == (low, high)
    # Two sets: the interval is of their mean AP; a perfect second set lifts it.
    perfect = masks.astype(float)
    both = metrics.pixel_ap_ci([maps, perfect], [masks, masks], [many, many], n_boot=200)
    assert both[0] > low
    with pytest.raises(ValueError, match="positive pixel"):
        metrics.pixel_ap_ci([maps[:40]], [masks[:40]], [many[:40]], n_boot=5)


def test_best_dice_interval_brackets_the_best_dice_and_a_perfect_map_reaches_one() -> None:
    rng = np.random.default_rng(1)
    maps = rng.random((80, 12, 12))
    masks = np.zeros((80, 12, 12), bool)
    masks[40:, 3:7, 3:7] = True
    maps[masks] += 0.5
    many = [f"p{i}" for i in range(80)]
    dice, _ = metrics.best_dice(maps, masks)
    low, high = metrics.best_dice_ci([maps], [masks], [many], n_boot=200)
    assert low < dice < high
    perfect = masks.astype(float)
    assert metrics.best_dice_ci([perfect], [masks], [many], n_boot=50) == (1.0, 1.0)


def test_binned_intervals_resolve_a_sparse_mask_at_the_top_of_the_maps() -> None:
    """Abnormal pixels that are a sliver of all pixels, every one above every normal pixel: the
    interval still holds AP and Dice of 1 (bins of the whole set alone would lump them with
    normal pixels in the top bin)."""
    rng = np.random.default_rng(3)
    maps = rng.random((200, 32, 32))
    masks = np.zeros((200, 32, 32), bool)
    masks[150:, 10:12, 10:12] = True  # 200 of 204,800 pixels
    maps[masks] = 1.0 + rng.random(int(masks.sum()))
    groups = [f"p{i}" for i in range(200)]
    assert metrics.pixel_ap(maps, masks) == pytest.approx(1.0)
    assert metrics.pixel_ap_ci([maps], [masks], [groups], n_boot=50)[0] > 0.99
    assert metrics.best_dice_ci([maps], [masks], [groups], n_boot=50)[0] > 0.99
