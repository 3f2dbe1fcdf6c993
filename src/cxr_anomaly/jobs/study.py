"""The jobs users run: evaluate one trained model; benchmark several models on one split.

``run_benchmark`` trains each model (or reuses/resumes its run folder), scores all of them on
the same split, and writes ``results.json``, the figures and ``report.html``. ``demo`` is the
benchmark of the registry's ``demo`` models on the built-in synthetic data (quick presets).

One evaluation, from the CLI down: the data (:mod:`cxr_anomaly.data.datamodule`), the scores
(:mod:`cxr_anomaly.evaluation.split_scores`, through :mod:`cxr_anomaly.runtime.inference`), the
trivial detectors
and fusions (:mod:`cxr_anomaly.evaluation.references`), the files
(:mod:`cxr_anomaly.reporting.results`), the
report (:mod:`cxr_anomaly.reporting.html`). Each is called from here, and none calls back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxr_anomaly.core.config import ConfigError, DataConfig, RunConfig, Settings, load_yaml
from cxr_anomaly.data.datamodule import PreparedData, SplitView
from cxr_anomaly.data.splits import SPLITS, external_protocol
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.references import CalibratedScores, ReferenceScore, reference_scores
from cxr_anomaly.evaluation.split_scores import ScoredSplit, evaluate_scored, score_split
from cxr_anomaly.jobs.training import CONFIG_FILE, train
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.presets import build_run_config
from cxr_anomaly.models.registry import DEMO, model_names
from cxr_anomaly.postprocess.baselines import BATCH
from cxr_anomaly.postprocess.post_processor import PostProcessor
from cxr_anomaly.postprocess.sharpness_fusion import stored_intensity_views
from cxr_anomaly.reporting.examples import Examples, select_examples
from cxr_anomaly.reporting.html import write_study_report
from cxr_anomaly.reporting.results import ModelResult, ResultsJson, StudyContext, write_study
from cxr_anomaly.runtime.checkpoint import ModelMetadata, load_weights, read_metadata
from cxr_anomaly.runtime.trainer import ScoringOptions, is_global_zero

log = logging.getLogger(__name__)


@dataclass
class StudyOptions:
    """Settings shared by ``evaluate`` and ``benchmark``."""

    out: Path
    split: str = "test"
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    n_examples: int = 4
    n_boot: int = metrics.N_BOOTSTRAP
    seed: int = 0
    command: str = ""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose from {', '.join(SPLITS)}")


def _add_sharpness_fusion(
    scored: ScoredSplit, post_processor: PostProcessor | None, data: PreparedData
) -> None:
    """The score the post-processor reports (a model trained with ``fuse_sharpness``: its
    fusion with sharpness), made the default score as ``predict`` reports it; the model's own
    score stays among the others."""
    if post_processor is None or post_processor.sharpness is None:
        return
    own = scored.default_score
    (stored,) = stored_intensity_views(data, scored.split)
    reported = post_processor.reported_score(own)
    scored.scores[reported] = post_processor.reported_values(
        scored.scores[own], stored.batches(BATCH)
    )
    scored.default_score = reported


def _model_result(
    model: AnomalyModel,
    metadata: ModelMetadata,
    run_dir: Path,
    data: PreparedData,
    view: SplitView,
    options: StudyOptions,
    examples: Examples,
) -> ModelResult:
    """Score ``view`` with one trained model, measure it, and add its outputs to ``examples``."""
    scored = score_split(model, view, options.scoring)
    pp = metadata.post_processor
    _add_sharpness_fusion(scored, pp, data)
    evaluation = evaluate_scored(scored, n_boot=options.n_boot, seed=options.seed)
    examples.add_model(
        model, 0.0 if pp is None else pp.map_floor, None if pp is None else pp.map_scale or None
    )
    return ModelResult(evaluation, scored, metadata, run_dir)


def _references(
    data: PreparedData, view: SplitView, results: list[ModelResult], n_boot: int
) -> dict[str, ReferenceScore]:
    models = [
        CalibratedScores(r.name, r.scored.default_score, r.scored.score, r.post_processor)
        for r in results
    ]
    return reference_scores(data, view, models, n_boot)


def _write(
    out: Path,
    context: StudyContext,
    results: list[ModelResult],
    examples: Examples,
    references: dict[str, ReferenceScore],
) -> ResultsJson:
    """The study's files and its report; the results as in ``results.json``."""
    results_json = write_study(out, context, results, examples, references)
    write_study_report(out, results_json)
    return results_json


def _context(
    title: str, data: PreparedData, view: SplitView, options: StudyOptions, preset: str | None
) -> StudyContext:
    summary = data.splits.summary()
    return StudyContext(
        title=title,
        data=data.source.describe(),
        data_label=data.source.label(),
        protocol=data.protocol.name,
        protocol_description=data.protocol.description,
        split=view.name,
        split_summary=summary,
        image_size=data.config.size,
        command=options.command,
        preset=preset,
    )


def evaluate_run(
    run_dir: Path,
    options: StudyOptions,
    data_config: DataConfig | None = None,
    external: bool = False,
) -> ResultsJson | None:
    """Evaluate the model of ``run_dir`` on its own test split, or on other data.

    Args:
        run_dir: a finished training run.
        options: output folder, split, scoring settings.
        data_config: other data to evaluate on; its image size and reader settings are replaced
            by the run's own, so preprocessing matches training.
        external: take every image of the data as test data (external validation).

    Returns:
        The results (as in ``results.json``) on the first process; ``None`` on the others of a
        distributed run.
    """
    metadata = read_metadata(run_dir)
    model = load_weights(run_dir, metadata)
    own = metadata.data
    config = (
        own
        if data_config is None
        else dataclasses.replace(
            data_config,
            size=own.size,
            apply_voi_lut=own.apply_voi_lut,
            intensity=own.intensity,
        )
    )
    data = PreparedData(config, protocol=external_protocol() if external else None)
    split = "test" if external else options.split
    needed = (split,) if external else (split, "train", "val_normal")
    data.prepare(needed, progress=options.scoring.progress)
    view = data.view(split)
    if len(set(view.labels.tolist())) < 2:
        raise ConfigError(f"the {split} split needs normal and abnormal images to evaluate")
    examples = select_examples(view, options.n_examples, options.seed)
    result = _model_result(model, metadata, run_dir, data, view, options, examples)
    title = f"cxr-anomaly evaluation: {metadata.model} on {data.source.label()}"
    context = _context(title, data, view, options, None)
    if not is_global_zero():
        return None
    references = {} if external else _references(data, view, [result], options.n_boot)
    return _write(options.out, context, [result], examples, references)


@dataclass
class BenchmarkOptions(StudyOptions):
    """``benchmark``: which models, with which preset and overrides, on which data."""

    models: tuple[str, ...] = field(default_factory=lambda: model_names(DEMO))
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "quick"
    train_overrides: Settings = field(default_factory=dict)
    model_overrides: dict[str, Settings] = field(default_factory=dict)
    progress: bool = True
    runs_dir: Path | None = None
    """Where the trained runs live (default ``out/runs``): another benchmark's runs are reused
    when their settings match, so one training can be scored on several splits."""


def _trained_model(
    config: RunConfig, run_dir: Path, progress: bool
) -> tuple[AnomalyModel, ModelMetadata]:
    """Reuse a finished run with the same config, resume an interrupted one, or train."""
    saved = run_dir / CONFIG_FILE
    if saved.is_file():
        if RunConfig.from_dict(load_yaml(saved)).to_dict() != config.to_dict():
            raise ConfigError(
                f"{run_dir} holds a run with other settings; choose another --out or remove it"
            )
        try:
            metadata = read_metadata(run_dir)
            log.info("reusing the trained model in %s", run_dir)
            return load_weights(run_dir, metadata), metadata
        except (ConfigError, ValueError):
            log.info("resuming the interrupted run in %s", run_dir)
            train(config, run_dir, resume=True, progress=progress)
    else:
        train(config, run_dir, resume=False, progress=progress)
    metadata = read_metadata(run_dir)
    return load_weights(run_dir, metadata), metadata


def run_benchmark(options: BenchmarkOptions) -> ResultsJson | None:
    """Train every model of ``options.models`` and compare them on one split.

    Returns the results on the first process; ``None`` on the others of a distributed run.
    """
    started = time.perf_counter()
    data = PreparedData(options.data)
    data.prepare(progress=options.progress)
    view = data.view(options.split)
    examples = select_examples(view, options.n_examples, options.seed)
    results = []
    for name in options.models:
        config = build_run_config(
            name,
            options.preset,
            options.data,
            options.train_overrides,
            options.model_overrides.get(name, {}),
        )
        run_dir = (options.runs_dir or options.out / "runs") / name
        model, metadata = _trained_model(config, run_dir, options.progress)
        results.append(_model_result(model, metadata, run_dir, data, view, options, examples))
    title = f"cxr-anomaly benchmark on {data.source.label()}"
    context = _context(title, data, view, options, options.preset)
    if not is_global_zero():
        return None
    references = _references(data, view, results, options.n_boot)
    context.wall_seconds = time.perf_counter() - started
    return _write(options.out, context, results, examples, references)
