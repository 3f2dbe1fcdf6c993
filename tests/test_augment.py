"""Training augmentations: off by default, within their ranges, masks moved with their images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cxr_anomaly.core.config import AugmentConfig, ConfigError, TrainConfig, from_dict
from cxr_anomaly.data.augment import augment
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.jobs.training import train
from tiny import MODEL_NAMES, tiny_run

MILD = AugmentConfig(
    shift=0.05, rotate=5.0, scale=0.05, gamma=0.25, contrast=0.15, blur=0.5, noise=0.01
)


def _phantoms(n: int = 6, size: int = 64) -> torch.Tensor:
    return torch.stack([torch.from_numpy(make_phantom(size, i).image) for i in range(n)])[:, None]


def test_the_default_changes_nothing() -> None:
    x = _phantoms()
    out, masks = augment(x, AugmentConfig())
    assert out is x and masks is None
    assert not TrainConfig().augment.enabled


def test_mild_changes_stay_in_range_and_differ_per_image() -> None:
    x = _phantoms()
    out, _ = augment(x, MILD, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    change = (out - x).abs().flatten(1).mean(1)
    assert bool((change > 1e-3).all())
    assert len(set(change.tolist())) == len(x)
    # Mild: the anatomy is still there (strongly correlated with the original).
    for a, b in zip(x.flatten(1), out.flatten(1), strict=True):
        assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.7


def test_the_same_generator_seed_draws_the_same_changes() -> None:
    x = _phantoms(3)
    first, _ = augment(x, MILD, generator=torch.Generator().manual_seed(7))
    again, _ = augment(x, MILD, generator=torch.Generator().manual_seed(7))
    other, _ = augment(x, MILD, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_masks_move_with_their_images() -> None:
    x = torch.zeros(4, 1, 64, 64)
    x[:, :, 20:40, 24:44] = 1.0
    geometric = AugmentConfig(shift=0.1, rotate=10.0, scale=0.1)
    out, masks = augment(x, geometric, x > 0.5, torch.Generator().manual_seed(1))
    assert masks is not None and masks.dtype == torch.bool
    # The moved mask covers the moved bright square (up to its interpolated edge).
    inside, outside = out[masks], out[~masks]
    assert float(inside.mean()) > 0.9 and float(outside.mean()) < 0.05
    assert not torch.equal(masks, x > 0.5)


def test_photometric_changes_leave_geometry_alone() -> None:
    x = _phantoms(4)
    out, _ = augment(x, AugmentConfig(gamma=0.25, contrast=0.15), generator=torch.Generator())
    # Gamma and contrast keep the order of a pixel's brightness within its image.
    for a, b in zip(x.flatten(1), out.flatten(1), strict=True):
        order = torch.argsort(a)
        assert bool((torch.diff(b[order]) >= -1e-6).all())


def test_the_config_refuses_impossible_ranges() -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        AugmentConfig(rotate=-1.0)
    with pytest.raises(ConfigError, match="below 1"):
        AugmentConfig(contrast=1.0)
    with pytest.raises(ConfigError, match=r"augment\.bogus"):
        from_dict(TrainConfig, {"augment": {"bogus": 1}})
    assert from_dict(TrainConfig, {"augment": {"gamma": 0.2}}).augment.gamma == 0.2


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_trains_on_augmented_images_reproducibly(name: str, tmp_path: Path) -> None:
    def weights(run: str, augment: AugmentConfig) -> dict[str, torch.Tensor]:
        config = tiny_run(name, tmp_path / "cache")
        config.train.augment = augment
        train(config, tmp_path / run, progress=False)
        return load_file(tmp_path / run / "model.safetensors")

    plain, first, again = weights("plain", AugmentConfig()), weights("a", MILD), weights("b", MILD)
    assert first.keys() == plain.keys()
    # The same seed draws the same augmentations; without them the weights end elsewhere.
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0, msg=key)
    floating = [k for k in first if first[k].is_floating_point() and first[k].numel()]
    changed = [k for k in floating if not torch.equal(first[k], plain[k])]
    assert len(changed) > len(floating) // 2
    assert all(bool(torch.isfinite(v).all()) for v in first.values() if v.is_floating_point())


def test_anatpaste_fits_its_normal_gaussians_on_augmented_copies_too(tmp_path: Path) -> None:
    fitted = {}
    for copies in (0, 2):
        config = tiny_run("anatpaste", tmp_path / "cache")
        config.train.augment = MILD
        config.model_params["normal_fit_copies"] = copies
        train(config, tmp_path / f"copies{copies}", progress=False)
        fitted[copies] = load_file(tmp_path / f"copies{copies}" / "model.safetensors")
    n_train = int(fitted[0]["n_fitted"])
    assert n_train > 0 and int(fitted[2]["n_fitted"]) == 3 * n_train
    # The same network weights, a wider normal distribution.
    torch.testing.assert_close(fitted[0]["net.out.weight"], fitted[2]["net.out.weight"])
    assert not torch.equal(fitted[0]["embed_mean"], fitted[2]["embed_mean"])
