"""AnatPaste: lung masks, the paste augmentation, the model interface, training and reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage

from cxr_anomaly.core.config import ConfigError, RunConfig, TrainConfig
from cxr_anomaly.data.lungs import ellipse_lungs, equalize, find_lungs, lung_mask, lung_masks
from cxr_anomaly.data.phantoms import body_mask, make_phantom
from cxr_anomaly.jobs.training import TrainResult, train
from cxr_anomaly.models.anatpaste.lightning_model import AnatPaste
from cxr_anomaly.models.anatpaste.paste import PasteSettings, anat_paste
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from tiny import SIZE, TINY_PARAMS, tiny_data

TINY: dict[str, Any] = TINY_PARAMS["anatpaste"]


def _phantoms(n: int, size: int = SIZE, start: int = 0) -> torch.Tensor:
    images = [make_phantom(size, seed).image for seed in range(start, start + n)]
    return torch.from_numpy(np.stack(images))[:, None]


def _model(**params: Any) -> AnatPaste:
    torch.manual_seed(0)
    model = build_model("anatpaste", {**TINY, **params}, TrainConfig(precision="32-true"))
    assert isinstance(model, AnatPaste)
    return model


# -- lung masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_lung_masks_of_phantoms_are_two_dark_lungs_inside_the_body(size: int) -> None:
    methods = []
    for seed in range(6):
        image = make_phantom(size, seed).image
        mask, method = find_lungs(image)
        methods.append(method)
        body = body_mask(size, seed)
        assert mask.shape == (size, size) and mask.dtype == bool
        assert not (mask & ~body).any(), "a lung outside the body"
        assert 0.08 <= mask.mean() <= 0.45, mask.mean()
        labels, count = ndimage.label(mask)
        assert count >= 2
        centres = np.array(ndimage.center_of_mass(mask, labels, range(1, count + 1)))
        assert (centres[:, 1] < size / 2).any() and (centres[:, 1] >= size / 2).any()
        # Lungs are the dark part of the body.
        assert image[mask].mean() < image[body & ~mask].mean() - 0.1
    assert methods.count("threshold") >= 5, methods


def test_lung_mask_falls_back_to_a_mirror_then_to_ellipses() -> None:
    size = 64
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = np.full((size, size), 0.8, np.float32)
    one_lung = ((rows - 0.45) / 0.25) ** 2 + ((cols - 0.3) / 0.12) ** 2 <= 1
    image[one_lung] = 0.2
    mask, method = find_lungs(image)
    assert method == "mirror"
    np.testing.assert_array_equal(mask, mask[:, ::-1])
    assert (mask & one_lung).sum() >= 0.9 * one_lung.sum()
    for flat in (np.zeros((size, size)), np.ones((size, size))):
        mask, method = find_lungs(flat)
        assert method == "ellipse"
        np.testing.assert_array_equal(mask, ellipse_lungs(size, size))
    with pytest.raises(ValueError, match="H, W"):
        lung_mask(np.zeros((1, size, size)))


def test_equalisation_gives_ranks_with_ties_kept_equal() -> None:
    image = np.array([[0.1, 0.5], [0.5, 0.9]], np.float32)
    np.testing.assert_allclose(equalize(image), [[0.125, 0.5], [0.5, 0.875]])
    assert np.unique(equalize(np.full((8, 8), 0.3))).size == 1


def test_batched_lung_masks_match_the_single_image_function() -> None:
    x = _phantoms(3, 64)
    masks = lung_masks(x)
    assert masks.shape == x.shape and masks.dtype == torch.bool
    for i in range(3):
        np.testing.assert_array_equal(masks[i, 0].numpy(), lung_mask(x[i, 0].numpy()))


# -- the paste augmentation -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_and_lungs() -> tuple[torch.Tensor, torch.Tensor]:
    x = _phantoms(8, 64)
    return x, lung_masks(x)


def test_paste_changes_pixels_inside_the_lungs_only(
    batch_and_lungs: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, lungs = batch_and_lungs
    out, blend = anat_paste(x, lungs, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and blend.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    diff = (out - x).abs()
    assert float(diff[~lungs].max()) <= 1e-6
    assert float(blend[~lungs].abs().max()) == 0.0
    assert float(blend.min()) >= 0.0 and float(blend.max()) <= 1.0
    changed = diff.flatten(1).amax(1)
    assert bool((changed > 1e-3).all()), changed


def test_paste_edges_are_soft(batch_and_lungs: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, lungs = batch_and_lungs
    settings = PasteSettings(opacity=(1.0, 1.0), blur=(0.03, 0.03))
    _, blend = anat_paste(x, lungs, torch.Generator().manual_seed(1), settings)
    for weights in blend.flatten(1):
        inside = weights[weights > 0]
        partial = ((inside > 0.02) & (inside < 0.98)).sum()
        assert int(partial) > 0, "no pixel mixes the original and the pasted patch"


def test_paste_is_deterministic_for_a_generator(
    batch_and_lungs: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, lungs = batch_and_lungs
    first, _ = anat_paste(x, lungs, torch.Generator().manual_seed(5))
    again, _ = anat_paste(x, lungs, torch.Generator().manual_seed(5))
    other, _ = anat_paste(x, lungs, torch.Generator().manual_seed(6))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    torch.manual_seed(3)
    global_first, _ = anat_paste(x, lungs)
    torch.manual_seed(3)
    global_again, _ = anat_paste(x, lungs)
    torch.testing.assert_close(global_first, global_again, rtol=0, atol=0)


def test_shifted_pastes_change_the_brightness_of_the_image_in_place(
    batch_and_lungs: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, lungs = batch_and_lungs
    settings = PasteSettings(
        opacity=(1.0, 1.0), blur=(0.005, 0.005), shift_prob=1.0, shift=(0.1, 0.3)
    )
    out, blend = anat_paste(x, lungs, torch.Generator().manual_seed(2), settings)
    for image, changed, weights in zip(x, out, blend, strict=True):
        unclipped = (changed > 1e-3) & (changed < 1 - 1e-3) & (image > 1e-3) & (image < 1 - 1e-3)
        full = (weights > 0.999) & unclipped
        assert int(full.sum()) > 0
        offsets = (changed - image)[full]
        # One offset per image: the image's own texture, brighter or darker by 0.1 to 0.3.
        assert float(offsets.max() - offsets.min()) < 1e-4
        assert 0.1 - 1e-5 <= abs(float(offsets[0])) <= 0.3 + 1e-5


def test_paste_needs_a_lung_in_every_image() -> None:
    x = torch.rand(2, 1, 16, 16)
    lungs = torch.zeros_like(x, dtype=torch.bool)
    lungs[0, 0, 4:12, 2:6] = True
    with pytest.raises(ValueError, match="lung mask"):
        anat_paste(x, lungs, torch.Generator().manual_seed(0))


# -- the model ------------------------------------------------------------------------------------


def test_outputs_have_the_interface_shapes_and_no_reconstruction() -> None:
    model = _model()
    x = _phantoms(3)
    assert AnatPaste.has_reconstruction is False
    assert model.reconstruct(x) is None
    result = model.infer(x)
    assert result.reconstruction is None
    expected = {"mahalanobis", "patch_max", "logit", "multiscale"}
    assert set(result.scores) == set(model.score_names()) == expected
    assert model.score_names()[0] == "mahalanobis" == model.config.default_score
    assert set(result.maps) == set(result.scores)
    for amap in result.maps.values():
        assert amap.shape == x.shape
        assert bool((amap >= 0).all())
    for values in result.scores.values():
        assert values.shape == (3,)
        assert bool(torch.isfinite(values).all())
    torch.testing.assert_close(model.score(x), result.scores["mahalanobis"])
    assert model.anomaly_map(x, "logit").shape == x.shape


def test_fitted_scores_do_not_depend_on_the_rest_of_the_batch() -> None:
    model = _model()
    model.fit_normal([_phantoms(32, start=100)], count=32)
    model.train()
    batch = _phantoms(64)
    for name in model.score_names():
        alone = model.score(batch[5:6], name)
        together = model.score(batch, name)[5:6]
        shuffled = model.score(batch.flip(0), name)[-6:-5]
        torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)
        torch.testing.assert_close(alone, shuffled, rtol=0, atol=1e-5)
    assert model.training, "infer must restore the training mode"


def test_fit_normal_sets_the_gaussians_and_caps_patch_samples() -> None:
    model = _model(max_patch_samples=100)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    normal = _phantoms(24, start=200)
    model.fit_normal([normal[:16], normal[16:]], count=24)
    assert int(model.n_fitted) == 24
    dim = model.embed_precision.shape[0]
    assert not torch.allclose(model.embed_precision, torch.eye(dim))
    torch.testing.assert_close(model.embed_precision, model.embed_precision.T)
    assert not torch.equal(model.patch_mean, fresh["patch_mean"])
    # The multi-scale Gaussian spans every stage's channels.
    assert model.multi_mean.shape == (sum(model.cfg.channels),)
    assert not torch.equal(model.multi_mean, fresh["multi_mean"])
    # Noise is further from normal phantoms than other normal phantoms are.
    scores = model.score(_phantoms(8, start=300))
    noise = model.score(torch.rand(8, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    assert float(noise.mean()) > float(scores.mean())
    with pytest.raises(ValueError, match="at least one image"):
        model.fit_normal([])


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="patch_stage"):
        build_model("anatpaste", {**TINY, "patch_stage": 3})
    with pytest.raises(ConfigError, match="lr_schedule"):
        build_model("anatpaste", {**TINY, "lr_schedule": "step"})
    with pytest.raises(ConfigError, match="paste_area"):
        build_model("anatpaste", {**TINY, "paste_area": [0.2, 0.1]})


# -- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("anatpaste")
    config = RunConfig(
        model="anatpaste",
        model_params=dict(TINY),
        data=tiny_data(root / "cache"),
        train=TrainConfig(
            max_epochs=2, batch_size=8, precision="32-true", accelerator="cpu", devices=1
        ),
    )
    return train(config, root / "run", progress=False)


def test_training_writes_a_model_that_reloads_to_identical_scores(trained: TrainResult) -> None:
    run_dir = trained.run_dir
    metadata = read_metadata(run_dir)
    assert metadata.model == "anatpaste"
    assert metadata.training.epochs == 2
    expected_scores = {"mahalanobis", "patch_max", "logit", "multiscale"}
    assert metadata.post_processor is not None
    assert set(metadata.post_processor.scores) == expected_scores
    metrics = (run_dir / "logs" / "metrics.csv").read_text()
    assert "val_loss" in metrics
    first, second = load_weights(run_dir), load_weights(run_dir)
    assert isinstance(first, AnatPaste)
    x = _phantoms(4, start=400)
    for name in first.score_names():
        torch.testing.assert_close(first.score(x, name), second.score(x, name), rtol=0, atol=0)
        torch.testing.assert_close(
            first.score(x, name), trained.model.score(x, name), rtol=0, atol=1e-5
        )


def test_training_fits_the_normal_gaussians_on_the_training_images(trained: TrainResult) -> None:
    model = load_weights(trained.run_dir)
    assert isinstance(model, AnatPaste)
    assert int(model.n_fitted) == len(trained.data.view("train"))
    for precision in (model.embed_precision, model.patch_precision, model.multi_precision):
        assert not torch.allclose(precision, torch.eye(precision.shape[0]))
    assert float(model.embed_mean.abs().sum()) > 0


def test_saved_weights_hold_every_buffer(trained: TrainResult) -> None:
    from safetensors.torch import load_file

    saved = load_file(Path(trained.run_dir) / "model.safetensors")
    buffers = ("embed", "patch", "multi")
    for key in (*(f"{b}_{part}" for b in buffers for part in ("mean", "precision")), "n_fitted"):
        assert key in saved
