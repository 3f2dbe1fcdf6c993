"""Command-line front end: parses arguments, calls the library, prints results.

No logic lives here that a test cannot call directly through the library.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cxr_anomaly.core.config import (
    INTENSITY_MODES,
    STORED_INTENSITY,
    ConfigError,
    DataConfig,
    RunConfig,
    Settings,
    from_dict,
)
from cxr_anomaly.core.version import __version__
from cxr_anomaly.data.images import ImageReadError
from cxr_anomaly.data.sources import DataSourceError
from cxr_anomaly.data.splits import SplitError, SplitResult
from cxr_anomaly.models.presets import build_run_config, preset_intensity
from cxr_anomaly.models.registry import DEMO, REFERENCE, model_names, model_spec
from cxr_anomaly.reporting.results import ResultsJson

log = logging.getLogger("cxr_anomaly")


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: shown as one line, exit code 2."""
    from cxr_anomaly.runtime.checkpoint import CheckpointError
    from cxr_anomaly.runtime.onnx import ExportError

    return (ConfigError, DataSourceError, SplitError, CheckpointError, ImageReadError, ExportError)


# -- argument groups -----------------------------------------------------------------------------


def _add_data_args(
    parser: argparse.ArgumentParser, required: bool = False, seed_alias: bool = False
) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default=None if required else "synthetic",
        required=required,
        metavar="SPEC",
        help="synthetic[:key=value,...] | rsna:PATH | folder:PATH | manifest:CSV "
        "(default: %(default)s)",
    )
    group.add_argument("--protocol", help="split protocol (default: the source's own)")
    group.add_argument("--size", type=int, default=64, help="image size in pixels (32-256)")
    seed_flags = ("--split-seed", "--seed") if seed_alias else ("--split-seed",)
    group.add_argument(
        *seed_flags, dest="split_seed", type=int, default=0, help="seed of the patient split"
    )
    group.add_argument("--split-file", help="split file for RSNA --protocol medianomaly")
    group.add_argument(
        "--normal-class",
        action="append",
        help="folder data: class folder holding normal images (repeatable; default: normal)",
    )
    group.add_argument(
        "--patient-pattern", help="folder data: regex with a (?P<patient>...) group on file stems"
    )
    group.add_argument("--cache-dir", help="where preprocessed images are kept")
    group.add_argument("--workers", type=int, default=0, help="processes for preparing images")
    group.add_argument("--no-voi-lut", action="store_true", help="ignore DICOM VOI LUT/windows")
    group.add_argument(
        "--intensity",
        choices=INTENSITY_MODES,
        help="per-image intensity standardisation after resizing (default: the preset's for "
        "train, else none)",
    )


def _data_config(args: argparse.Namespace, intensity: str = STORED_INTENSITY) -> DataConfig:
    """The data settings on the command line; ``intensity`` where ``--intensity`` is not given."""
    return DataConfig(
        spec=args.data,
        protocol=args.protocol,
        size=args.size,
        split_seed=args.split_seed,
        split_file=args.split_file,
        normal_classes=args.normal_class or ["normal"],
        patient_pattern=args.patient_pattern,
        cache_dir=args.cache_dir,
        workers=args.workers,
        apply_voi_lut=not args.no_voi_lut,
        intensity=args.intensity or intensity,
    )


def _add_trainer_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware")
    group.add_argument("--accelerator", help="cpu | gpu | auto (default from preset: auto)")
    group.add_argument("--devices", help="number of devices, or auto")
    group.add_argument("--num-nodes", type=int, help="machines taking part")
    group.add_argument("--strategy", help="Lightning strategy: auto | ddp | ...")
    group.add_argument(
        "--precision", help="32-true | bf16-mixed | 16-mixed | auto (bf16 where supported)"
    )


def _trainer_overrides(args: argparse.Namespace) -> Settings:
    overrides: Settings = {}
    for key in ("accelerator", "strategy", "precision"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    if getattr(args, "devices", None) is not None:
        overrides["devices"] = int(args.devices) if args.devices.isdigit() else args.devices
    if getattr(args, "num_nodes", None) is not None:
        overrides["num_nodes"] = args.num_nodes
    return overrides


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def _set_overrides(pairs: Sequence[str] | None) -> Settings:
    overrides: Settings = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: use key=value")
        overrides[key.strip()] = _parse_value(value)
    return overrides


def _add_fuse_sharpness_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fuse-sharpness",
        action="store_true",
        help="also keep the fusion of each model's score with the sharpness detector, which "
        "evaluate and predict then report (see README)",
    )


def run_config_from_args(model: str, args: argparse.Namespace) -> RunConfig:
    """The run config of ``train``: preset, then command-line overrides."""
    train_overrides = _trainer_overrides(args)
    for key, attr in (("max_epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed")):
        if getattr(args, attr, None) is not None:
            train_overrides[key] = getattr(args, attr)
    if getattr(args, "fuse_sharpness", False):
        train_overrides["fuse_sharpness"] = True
    preset = args.preset or model_spec(model).default_preset
    data = _data_config(args, preset_intensity(model, preset))
    return build_run_config(model, preset, data, train_overrides, _set_overrides(args.set))


# -- commands --------------------------------------------------------------------------------------


def _print_split_table(splits: SplitResult) -> None:
    summary = splits.summary()
    print(f"protocol {splits.protocol.name}: {splits.protocol.description}")
    print(f"{'split':<11} {'class':<32} {'patients':>9} {'images':>9}")
    for split, classes in summary.items():
        for cls, counts in classes.items():
            print(f"{split:<11} {cls:<32} {counts['patients']:>9} {counts['images']:>9}")


def _split_summary_json(splits: SplitResult, data: DataConfig) -> dict[str, Any]:
    return {
        "data": data.spec,
        "protocol": {"name": splits.protocol.name, "description": splits.protocol.description},
        "seed": splits.seed,
        "splits": splits.summary(),
    }


def cmd_split(args: argparse.Namespace) -> int:
    from cxr_anomaly.data.catalog import open_source
    from cxr_anomaly.data.splits import make_splits

    config = _data_config(args)
    source = open_source(config)
    splits = make_splits(source.samples(), source.protocol(config.protocol), config.split_seed)
    if args.out:
        splits.write_csv(Path(args.out))
    if args.json:
        print(json.dumps(_split_summary_json(splits, config), indent=2))
    else:
        _print_split_table(splits)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from cxr_anomaly.data.datamodule import PreparedData

    data = PreparedData(_data_config(args))
    report = data.prepare(progress=not args.quiet)
    _print_split_table(data.splits)
    print(
        f"cache {data.cache.directory}: {report.processed} prepared, {report.reused} reused, "
        f"{report.failed} failed ({report.seconds:.1f} s)"
    )
    for sample_id, error in list(report.errors.items())[:20]:
        print(f"  failed: {sample_id}: {error}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from cxr_anomaly.jobs.training import train
    from cxr_anomaly.runtime.trainer import is_global_zero

    config = run_config_from_args(args.model, args)
    result = train(config, Path(args.out), resume=args.resume, progress=not args.quiet)
    if not is_global_zero():
        return 0
    print(
        f"trained {args.model}: {result.epochs} epochs, {result.steps} steps, "
        f"{result.seconds:.1f} s -> {result.run_dir}"
    )
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    from cxr_anomaly.jobs.training import refit_normal

    out = refit_normal(Path(args.run_dir), Path(args.out), _set_overrides(args.set))
    print(f"refitted the normal statistics of {args.run_dir} -> {out}")
    return 0


def _scoring_options(args: argparse.Namespace) -> Any:
    from cxr_anomaly.runtime.trainer import ScoringOptions

    hardware = {k: v for k, v in _trainer_overrides(args).items() if k != "precision"}
    settings: Settings = {"accelerator": "auto", "strategy": "auto", **hardware}
    return from_dict(
        ScoringOptions,
        {**settings, "batch_size": args.score_batch_size, "progress": not args.quiet},
    )


def _print_results(results: ResultsJson | None, out: Path) -> None:
    from cxr_anomaly.reporting.html import REPORT_FILE, text_table
    from cxr_anomaly.reporting.results import RESULTS_FILE

    if results is None:  # a secondary process of a distributed run
        return
    print(f"{results['protocol']['name']}: {results['protocol']['description']}")
    print(f"split: {results['split']}, image size {results['image_size']}")
    print(text_table(results))
    print(f"results: {out / RESULTS_FILE}\nreport:  {out / REPORT_FILE}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cxr_anomaly.jobs.study import StudyOptions, evaluate_run

    run_dir = Path(args.run_dir)
    out = (
        Path(args.out)
        if args.out
        else run_dir / f"eval-{'external' if args.external else args.split}"
    )
    options = StudyOptions(
        out=out, split=args.split, scoring=_scoring_options(args), command=_command_line()
    )
    data = _data_config(args) if args.data else None
    results = evaluate_run(run_dir, options, data, external=args.external)
    _print_results(results, out)
    return 0


def _benchmark(args: argparse.Namespace, models: Sequence[str]) -> int:
    from cxr_anomaly.jobs.study import BenchmarkOptions, run_benchmark

    if args.reference:
        models = model_names(REFERENCE)
    preset = args.preset or ("paper" if args.reference else "quick")

    train_overrides = _trainer_overrides(args)
    if args.epochs is not None:
        train_overrides["max_epochs"] = args.epochs
    if args.seed is not None:
        train_overrides["seed"] = args.seed
    if getattr(args, "fuse_sharpness", False):
        train_overrides["fuse_sharpness"] = True
    out = Path(args.out)
    options = BenchmarkOptions(
        out=out,
        split=args.split,
        scoring=_scoring_options(args),
        command=_command_line(),
        models=tuple(models),
        data=_data_config(args),
        preset=preset,
        train_overrides=train_overrides,
        progress=not args.quiet,
    )
    _print_results(run_benchmark(options), out)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    listed = args.models or ",".join(model_names(DEMO))
    models = [model_spec(m.strip()).name for m in listed.split(",") if m.strip()]
    return _benchmark(args, models)


def cmd_demo(args: argparse.Namespace) -> int:
    return _benchmark(args, model_names(DEMO))


def _command_line() -> str:
    return " ".join(["cxr-anomaly", *sys.argv[1:]])


def cmd_predict(args: argparse.Namespace) -> int:
    from cxr_anomaly.jobs.predict import run_predict

    args.score_batch_size = args.batch_size
    report = run_predict(
        Path(args.run_dir),
        args.inputs,
        Path(args.out),
        specificity=args.specificity,
        options=_scoring_options(args),
        num_workers=args.workers,
        regions=args.regions,
    )
    if report is None:  # a secondary process of a distributed run
        return 0
    print(
        f"{report.n_inputs} input(s): {report.n_scored} scored, {report.n_failed} failed"
        + (f" ({report.n_resumed} from an earlier run)" if report.n_resumed else "")
    )
    print(f"predictions: {report.csv_path}")
    if args.regions:
        print(f"regions: {report.csv_path.parent / 'regions.csv'}")
    if report.failures:
        print("failed:", file=sys.stderr)
        for path, error in report.failures:
            print(f"  {path}: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cxr_anomaly.jobs.export import export_onnx

    report = export_onnx(Path(args.run_dir), Path(args.out) if args.out else None)
    print(
        f"exported {report.model} (score {report.score}) to {report.out_dir} in "
        f"{report.seconds:.0f} s; on {report.parity_images} check images the exported scores "
        f"differ from the trained model's by at most {report.max_score_difference:.2g} "
        f"(maps {report.max_map_difference:.2g})"
    )
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    from cxr_anomaly.data.phantom_gallery import save_phantom_gallery

    path = save_phantom_gallery(
        Path(args.out), size=args.size, seed=args.seed, difficulty=args.difficulty
    )
    print(f"wrote {path}")
    return 0


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-anomaly",
        description="Unsupervised anomaly detection in chest X-rays (BiGAN, VAE-GAN, AnoDDPM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    split = commands.add_parser("split", help="compute patient-level splits from labels alone")
    _add_data_args(split, seed_alias=True)
    split.add_argument("--json", action="store_true", help="print JSON instead of a table")
    split.add_argument("--out", help="also write the split manifest CSV here")
    split.set_defaults(func=cmd_split)

    prepare = commands.add_parser("prepare", help="preprocess images into the on-disk cache")
    _add_data_args(prepare, seed_alias=True)
    prepare.set_defaults(func=cmd_prepare)

    train = commands.add_parser("train", help="train one model on normal images")
    train.add_argument("model", help=f"model name: {', '.join(model_names())}")
    train.add_argument("--out", required=True, help="run folder to create")
    train.add_argument(
        "--preset",
        help="tiny | quick | long | paper | robust | a YAML file (default: the model's recipe "
        "for real radiographs, with its intensity mode)",
    )
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--epochs", type=int, help="override the preset's max_epochs")
    train.add_argument("--batch-size", type=int, help="override the preset's batch size")
    train.add_argument("--seed", type=int, help="training seed")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a model parameter"
    )
    _add_fuse_sharpness_arg(train)
    _add_data_args(train)
    _add_trainer_args(train)
    train.set_defaults(func=cmd_train)

    refit = commands.add_parser(
        "refit",
        help="a trained run with other scoring settings: its normal statistics fitted again, "
        "no training",
    )
    refit.add_argument("run_dir", help="a run folder written by train or benchmark")
    refit.add_argument("--out", required=True, help="the new run folder")
    refit.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a model parameter, e.g. dense_stages=[1,2] and default_score=dense (AnatPaste)",
    )
    refit.set_defaults(func=cmd_refit)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained model")
    evaluate.add_argument("run_dir", help="a run folder written by train or benchmark")
    evaluate.add_argument("--out", help="output folder (default: RUN_DIR/eval-SPLIT)")
    evaluate.add_argument("--split", default="test", help="split to evaluate (default: test)")
    evaluate.add_argument(
        "--external", action="store_true", help="every image of --data is test data"
    )
    evaluate.add_argument("--score-batch-size", type=int, default=64)
    _add_data_args(evaluate)
    evaluate.set_defaults(data=None)
    _add_trainer_args(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    for name, helptext in (
        ("benchmark", "train several models and compare them on one test split"),
        ("demo", "the main job: benchmark all models on the built-in synthetic data"),
    ):
        sub = commands.add_parser(name, help=helptext)
        if name == "benchmark":
            sub.add_argument(
                "--models",
                help="comma-separated model names (default: the reference study's four and"
                " anatpaste)",
            )
            _add_fuse_sharpness_arg(sub)
        sub.add_argument("--out", default=f"runs/{name}", help="output folder")
        sub.add_argument(
            "--preset",
            help="quick | long | paper | a YAML file (default: quick; paper with --reference)",
        )
        sub.add_argument(
            "--reference",
            action="store_true",
            help="the reference study's configuration: its four models with their paper presets"
            " (hours on a CPU); overrides --models",
        )
        sub.add_argument("--split", default="test", help="split to evaluate (default: test)")
        sub.add_argument("--epochs", type=int, help="override every preset's max_epochs")
        sub.add_argument("--seed", type=int, help="training seed")
        sub.add_argument("--score-batch-size", type=int, default=64)
        _add_data_args(sub)
        _add_trainer_args(sub)
        sub.set_defaults(func=cmd_benchmark if name == "benchmark" else cmd_demo)

    predict = commands.add_parser("predict", help="score new images with a trained model")
    predict.add_argument(
        "run_dir", help="a run folder written by train or benchmark, or one written by export"
    )
    predict.add_argument("inputs", nargs="+", help="files, folders (recursive) or globs")
    predict.add_argument("--out", required=True, help="folder for predictions.csv and overlays")
    predict.add_argument(
        "--specificity",
        type=float,
        default=0.95,
        help="decision threshold: this fraction of normal validation images scores below it",
    )
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--workers", type=int, default=0, help="processes reading the files")
    predict.add_argument(
        "--regions",
        action="store_true",
        help="also write regions.csv: each map region above the map scale, as a box in the "
        "original image's pixels (x, y, width, height), and box them on the overlays",
    )
    _add_trainer_args(predict)
    predict.set_defaults(func=cmd_predict)

    export = commands.add_parser(
        "export", help="write a trained model as an ONNX graph with its preprocessing"
    )
    export.add_argument("run_dir", help="a run folder written by train or benchmark")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--out", help="output folder (default: RUN_DIR/onnx)")
    export.set_defaults(func=cmd_export)

    phantoms = commands.add_parser("phantoms", help="save a figure of the synthetic phantoms")
    phantoms.add_argument("--out", default="docs/phantoms.png")
    phantoms.add_argument("--size", type=int, default=128)
    phantoms.add_argument("--seed", type=int, default=0)
    phantoms.add_argument("--difficulty", type=float, default=0.25, help="0 obvious .. 1 subtle")
    phantoms.set_defaults(func=cmd_phantoms)
    for command in commands.choices.values():  # -v / -q after the command name too
        _add_verbosity(command, default=argparse.SUPPRESS)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default: object = False) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug logging"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars, less logging"
    )


# Lightning's own deprecation notices and small-dataset hints say nothing a user can act on.
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r"The number of training batches .* is smaller than the logging interval.*",
    r".*does not have many workers which may be a bottleneck.*",
)


LIGHTNING_COMMANDS = {"train", "evaluate", "benchmark", "demo", "predict"}
#: Loggers that warn about things this package never uses (the ONNX exporter, on every export,
#: that torchvision's detection operators are not registered): shown only with --verbose.
IRRELEVANT_LOGGERS = ("torch.onnx._internal.exporter._registration",)


def _configure_logging(command: str, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in IRRELEVANT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if command in LIGHTNING_COMMANDS:
        # Lightning sets its loggers to INFO with a console handler when first imported; its
        # hardware summary and tips are shown only with --verbose.
        import lightning  # noqa: F401

        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.command, args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:
        if isinstance(err, _user_errors()):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
