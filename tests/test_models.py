"""The shared model interface: shapes, determinism, save/load, resume (tiny settings)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import cxr_anomaly
from benchmark_scripts import BENCHMARKS
from cxr_anomaly.core.config import ConfigError, DataConfig, TrainConfig
from cxr_anomaly.jobs.training import train
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.presets import build_run_config, load_preset
from cxr_anomaly.models.registry import DEMO, REFERENCE, build_model, model_names, model_spec
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from cxr_anomaly.runtime.trainer import BestWeights
from tiny import MODEL_NAMES, SIZE, TINY_PARAMS, tiny_run


def _model(name: str) -> AnomalyModel:
    torch.manual_seed(0)
    return build_model(name, TINY_PARAMS[name], TrainConfig(precision="32-true"))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIZE, SIZE, generator=generator)


def test_the_registry_is_the_list_of_models_and_their_tags() -> None:
    assert model_names(REFERENCE) == ("bigan", "vaegan", "anoddpm-gaussian", "anoddpm-simplex")
    assert model_names(DEMO) == (*model_names(REFERENCE), "anatpaste")
    assert set(MODEL_NAMES) == set(model_names())
    assert model_spec("anoddpm-simplex").fixed == {"noise": "simplex"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_built_model_answers_to_its_registry_name(name: str) -> None:
    assert _model(name).name == name


def test_unknown_model_and_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("nope", {})
    with pytest.raises(ConfigError, match="latent"):
        build_model("vaegan", {"latentdim": 3})
    with pytest.raises(ConfigError, match="fixes"):
        build_model("anoddpm-simplex", {"noise": "gaussian"})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_have_the_interface_shapes_and_ranges(name: str) -> None:
    model = _model(name)
    x = _images(3)
    result = model.infer(x)
    assert set(result.scores) == set(model.score_names())
    for name_, amap in result.maps.items():
        assert amap.shape == x.shape, name_
        assert (amap >= 0).all()
    for values in result.scores.values():
        assert values.shape == (3,)
        assert torch.isfinite(values).all()
    assert model.anomaly_map(x).shape == x.shape
    if name == "anatpaste":  # a model without a reconstruction returns None for it
        assert result.reconstruction is None and model.reconstruct(x) is None
        torch.testing.assert_close(model.score(x), result.scores["mahalanobis"])
        return
    assert result.reconstruction is not None
    assert result.reconstruction.shape == x.shape
    assert 0.0 <= result.reconstruction.min() <= result.reconstruction.max() <= 1.0
    # The default score is the mean of the L1 map (the reference study's score).
    l1 = (x - result.reconstruction).abs().flatten(1).mean(1)
    torch.testing.assert_close(result.scores["l1"], l1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.score(x), result.scores["l1"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_score_does_not_depend_on_the_rest_of_the_batch(name: str) -> None:
    model = _model(name)
    model.train()  # infer must switch to eval mode by itself
    batch = _images(64 if not name.startswith("anoddpm") else 16, seed=1)
    alone = model.score(batch[5:6])
    together = model.score(batch)[5:6]
    shuffled = model.score(batch.flip(0))[-6:-5]
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)
    torch.testing.assert_close(alone, shuffled, rtol=0, atol=1e-5)
    assert model.training, "infer must restore the training mode"


def test_unknown_score_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose from"):
        _model("vaegan").score(_images(1), score="nope")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every model trained for one tiny epoch (shared by the save/load tests)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name in MODEL_NAMES:
        run_dir = root / name
        train(tiny_run(name, root / "cache"), run_dir, progress=False)
        runs[name] = run_dir
    return runs


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_writes_a_run_that_reloads_to_identical_scores(
    name: str, trained_runs: dict[str, Path]
) -> None:
    run_dir = trained_runs[name]
    for expected in ("config.yaml", "splits.csv", "model.json", "model.safetensors"):
        assert (run_dir / expected).is_file(), expected
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "logs" / "metrics.csv").is_file()
    metadata = read_metadata(run_dir)
    assert metadata.model == name
    assert metadata.training.epochs == 1
    # Weights are plain tensors in safetensors; no pickle is involved.
    assert all(
        isinstance(v, torch.Tensor) for v in load_file(run_dir / "model.safetensors").values()
    )
    first, second = load_weights(run_dir), load_weights(run_dir)
    x = _images(4, seed=2)
    torch.testing.assert_close(first.score(x), second.score(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_changes_the_weights(name: str, trained_runs: dict[str, Path]) -> None:
    trained = load_weights(trained_runs[name]).state_dict()
    L.seed_everything(0, verbose=False)
    fresh = build_model(name, TINY_PARAMS[name], TrainConfig()).state_dict()
    weights = [k for k in fresh if fresh[k].is_floating_point() and fresh[k].numel()]
    changed = [k for k in weights if not torch.equal(fresh[k], trained[k])]
    assert len(changed) > len(weights) // 2


def test_lightning_checkpoint_loads_without_pickled_objects(trained_runs: dict[str, Path]) -> None:
    checkpoint = torch.load(
        trained_runs["bigan"] / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert "state_dict" in checkpoint and "optimizer_states" in checkpoint


class _Interrupt(Exception):
    """Stands in for a crash after the first epoch's checkpoint."""


class _CrashAtEpoch(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Interrupt


class _FirstEpoch(L.Callback):
    def __init__(self) -> None:
        self.epoch: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch = trainer.current_epoch


def _interrupt_and_resume(name: str, tmp_path: Path) -> tuple[Path, int | None]:
    """Train ``name`` for 2 tiny epochs, crashing after the first, then resume it."""
    config = tiny_run(name, tmp_path / "cache", epochs=2)
    run_dir = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        train(config, run_dir, progress=False, callbacks=[_CrashAtEpoch(1)])
    assert not (run_dir / "model.json").exists()
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu"
    )
    assert checkpoint["epoch"] == 0  # the first epoch's checkpoint, written before the crash
    first = _FirstEpoch()
    train(config, run_dir, resume=True, progress=False, callbacks=[first])
    return run_dir, first.epoch


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bigan", "vaegan", "anoddpm-simplex"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    name: str, tmp_path: Path
) -> None:
    run_dir, first_epoch = _interrupt_and_resume(name, tmp_path)
    assert first_epoch == 1  # continued from the checkpoint, not restarted
    assert json.loads((run_dir / "model.json").read_text())["training"]["epochs"] == 2
    train(tiny_run(name, tmp_path / "cache", epochs=2), tmp_path / "straight", progress=False)
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(run_dir / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)


def test_resume_refuses_other_settings_and_fresh_runs_refuse_to_overwrite(
    tmp_path: Path, trained_runs: dict[str, Path]
) -> None:
    config = tiny_run("vaegan", tmp_path / "cache")
    run_dir = trained_runs["vaegan"]
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config, run_dir, progress=False)
    config.train.max_epochs = 5
    with pytest.raises(ConfigError, match="same settings"):
        train(config, run_dir, resume=True, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config, tmp_path / "empty", resume=True, progress=False)


def test_scores_stay_finite_on_constant_and_extreme_images() -> None:
    for name in MODEL_NAMES:
        model = _model(name)
        x = torch.cat([torch.zeros(1, 1, SIZE, SIZE), torch.ones(1, 1, SIZE, SIZE)])
        assert np.isfinite(model.score(x).numpy()).all(), name


class _WeightsByEpoch(L.Callback):
    """Each epoch's normal validation loss and the weights that produced it."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.losses.append(float(trainer.callback_metrics["val_loss"]))
        self.weights.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def test_restore_best_keeps_the_weights_of_the_lowest_validation_loss(tmp_path: Path) -> None:
    config = tiny_run("vaegan", tmp_path / "cache", epochs=4, restore_best=True)
    record = _WeightsByEpoch()
    run = train(config, tmp_path / "run", progress=False, callbacks=[record])
    best = int(np.argmin(record.losses))
    assert read_metadata(tmp_path / "run").training.best_epoch == best
    final = run.model.state_dict()
    for key, value in record.weights[best].items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=0, msg=key)


def test_best_weights_returns_to_the_best_epoch_and_survives_a_checkpoint(
    tmp_path: Path,
) -> None:
    module = torch.nn.Linear(2, 1)
    callback = BestWeights(tmp_path, "val_loss")
    snapshots = []
    for epoch, loss in enumerate([1.0, 0.5, 0.8, 0.4, 0.3]):
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        snapshots.append(module.weight.detach().clone())
        trainer = SimpleNamespace(
            sanity_checking=False,
            current_epoch=epoch,
            callback_metrics={"val_loss": loss},
            local_rank=0,
            strategy=SimpleNamespace(barrier=lambda name: None),
        )
        callback.on_validation_end(trainer, module)  # type: ignore[arg-type]
        if epoch == 1:
            state_at_epoch_1 = callback.state_dict()
    assert "weights" not in callback.state_dict()  # checkpoints carry no copy of the model
    # The best and the one before it stay on disk, for a checkpoint written before the best.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch3.pt", "best-epoch4.pt"]
    for state, epoch in ((callback.state_dict(), 4), (state_at_epoch_1, 1)):
        restored = BestWeights(tmp_path, "val_loss")
        restored.load_state_dict(state)
        if epoch == 1:  # as if resumed from an old checkpoint that carried the weights
            restored.load_state_dict(
                {**state, "weights": {"weight": snapshots[1], "bias": module.bias}}
            )
        restored.on_train_end(trainer, module)  # type: ignore[arg-type]
        assert restored.best_epoch == epoch
        torch.testing.assert_close(module.weight, snapshots[epoch])


def test_max_time_stops_training(tmp_path: Path) -> None:
    config = tiny_run("vaegan", tmp_path / "cache", epochs=100_000, max_time="00:00:00:02")
    run = train(config, tmp_path / "run", progress=False)
    assert run.epochs < 100_000
    assert read_metadata(tmp_path / "run").training.seconds < 30


BUNDLED_PRESETS = sorted(
    (path.name.rsplit("-", 1)[0], path.stem.rsplit("-", 1)[1])
    for path in (Path(cxr_anomaly.__file__).parent / "configs").glob("*.yaml")
)


def test_every_model_has_tiny_quick_and_paper_presets() -> None:
    for name in model_names():
        assert {"tiny", "quick", "paper"} <= set(model_spec(name).presets())
        assert {(name, p) for p in model_spec(name).presets()} <= set(BUNDLED_PRESETS)


@pytest.mark.parametrize(("name", "preset"), BUNDLED_PRESETS)
def test_every_bundled_preset_builds_its_model(name: str, preset: str) -> None:
    config = build_run_config(name, preset, DataConfig(spec="synthetic:", size=64))
    model = build_model(config.model, config.model_params, config.train)
    for key, value in load_preset(name, preset).model_params.items():
        assert getattr(model.config, key) == (tuple(value) if isinstance(value, list) else value)


def test_bigan_robust_is_the_measured_variant() -> None:
    """The quick preset's networks and training (consistency 200, lr 1e-3), as measured on the
    yardstick (benchmarks/results/yardstick-bigan-consistency.md), scored with ``lowpass`` and
    drawing that error judged per pixel: the scoring the yardstick compared it under."""
    quick, robust = load_preset("bigan", "quick"), load_preset("bigan", "robust")
    network_sizes = ("_channels", "_dim", "_dense", "_units")
    training = ("lr", "beta1", "ema_decay", "consistency_weight")
    shared = {k: v for k, v in quick.model_params.items() if k.endswith(network_sizes)}
    shared |= {k: quick.model_params[k] for k in training}
    expected = {
        **shared,
        "lowpass_sigma": 2.0,
        "default_score": "lowpass",
        "pixel_z_of": "lowpass",
        "map_score": "pixel_z",
    }
    assert robust.model_params == expected
    assert (robust.model_params["lr"], robust.model_params["consistency_weight"]) == (1e-3, 200.0)
    assert robust.train == quick.train


def test_anatpaste_long_is_the_measured_variant() -> None:
    """The paper preset trained with the robust preset's augmentation: the variant
    anatpaste-paper+local+augment of benchmarks/generalisation.yaml, whose test-dev numbers the
    preset's comment and the README quote."""
    paper, robust = load_preset("anatpaste", "paper"), load_preset("anatpaste", "robust")
    long = load_preset("anatpaste", "long")
    assert long.model_params == paper.model_params
    assert long.train == {**paper.train, "augment": robust.train["augment"]}
    spec = yaml.safe_load((BENCHMARKS / "generalisation.yaml").read_text())
    (variant,) = [v for v in spec["variants"] if v["name"] == "anatpaste-paper+local+augment"]
    assert variant["preset"] == "paper"
    assert variant["data"] == {"intensity": "local"}
    assert variant["train"] == {"augment": robust.train["augment"]}
    assert "model_params" not in variant


def test_a_missing_preset_names_the_models_presets() -> None:
    with pytest.raises(ConfigError, match="its presets: long, paper, quick, robust"):
        load_preset("anatpaste", "huge")
    with pytest.raises(ConfigError, match="unknown model 'foo'; choose from bigan, vaegan"):
        load_preset("foo", "quick")


@pytest.mark.parametrize("name", ["bigan", "vaegan"])
def test_gan_lowpass_score_is_the_blurred_reconstruction_error(name: str) -> None:
    from cxr_anomaly.models.components.maps import lowpass_l1_map

    assert "lowpass" not in build_model(name, TINY_PARAMS[name]).score_names()
    model = build_model(name, {**TINY_PARAMS[name], "lowpass_sigma": 2.0}).eval()
    assert "lowpass" in model.score_names()
    x = torch.rand(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    result = model.infer(x)
    assert result.reconstruction is not None
    sigma = 2.0 * SIZE / 64  # given at 64x64, scaled to the model's image size
    expected = lowpass_l1_map(x, result.reconstruction, sigma)
    torch.testing.assert_close(result.maps["lowpass"], expected)
    torch.testing.assert_close(result.scores["lowpass"], expected.mean((1, 2, 3)))
    with pytest.raises(ValueError, match="lowpass_sigma"):
        build_model(name, {**TINY_PARAMS[name], "lowpass_sigma": -1.0})


class _ScrambleGlobalRandomness(L.Callback):
    """Reseeds torch's global generator at every epoch start with ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_noise_comes_from_the_models_generators_not_the_global_one(
    name: str, tmp_path: Path
) -> None:
    weights = []
    for seed in (1, 2):
        run = tmp_path / f"run{seed}"
        train(
            tiny_run(name, tmp_path / "cache", epochs=2),
            run,
            progress=False,
            callbacks=[_ScrambleGlobalRandomness(seed)],
        )
        weights.append(load_file(run / "model.safetensors"))
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=0, atol=0, msg=key)
