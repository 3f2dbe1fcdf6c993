"""Command-line front end: parses arguments, calls the library, prints results.

No logic lives here that a test cannot call directly through the library.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from cxr_anomaly import __version__
from cxr_anomaly.checkpoint import CheckpointError
from cxr_anomaly.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    load_preset,
    merge,
)
from cxr_anomaly.data.images import ImageReadError
from cxr_anomaly.data.sources import DataSourceError
from cxr_anomaly.data.splits import SplitError, SplitResult
from cxr_anomaly.models.registry import model_names

log = logging.getLogger("cxr_anomaly")

USER_ERRORS = (ConfigError, DataSourceError, SplitError, CheckpointError, ImageReadError)


# -- argument groups -----------------------------------------------------------------------------


def _add_data_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
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
    group.add_argument("--split-seed", type=int, default=0, help="seed of the patient split")
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


def _data_config(args: argparse.Namespace) -> DataConfig:
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


def _trainer_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
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


def _set_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: use key=value")
        overrides[key.strip()] = _parse_value(value)
    return overrides


def run_config_from_args(model: str, args: argparse.Namespace) -> RunConfig:
    """The run config of ``train``/``benchmark``: preset, then command-line overrides."""
    raw = load_preset(model, args.preset)
    train_overrides: dict[str, Any] = _trainer_overrides(args)
    for key, attr in (("max_epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed")):
        if getattr(args, attr, None) is not None:
            train_overrides[key] = getattr(args, attr)
    raw = merge(raw, {"train": train_overrides, "model_params": _set_overrides(args.set)})
    data = _data_config(args)
    raw["data"] = {**raw.get("data", {}), **asdict(data)}
    # The networks' input size always follows the data's image size.
    raw["model_params"] = {**raw.get("model_params", {}), "image_size": data.size}
    return RunConfig.from_dict(raw)


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
    from cxr_anomaly.training import train

    config = run_config_from_args(args.model, args)
    result = train(config, Path(args.out), resume=args.resume, progress=not args.quiet)
    print(
        f"trained {args.model}: {result.epochs} epochs, {result.steps} steps, "
        f"{result.seconds:.1f} s -> {result.run_dir}"
    )
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    from cxr_anomaly.data.phantom_gallery import save_phantom_gallery

    path = save_phantom_gallery(Path(args.out), size=args.size, seed=args.seed)
    print(f"wrote {path}")
    return 0


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-anomaly",
        description="Unsupervised anomaly detection in chest X-rays (BiGAN, VAE-GAN, AnoDDPM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, less logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    split = commands.add_parser("split", help="compute patient-level splits from labels alone")
    _add_data_args(split)
    split.add_argument("--json", action="store_true", help="print JSON instead of a table")
    split.add_argument("--out", help="also write the split manifest CSV here")
    split.set_defaults(func=cmd_split)

    prepare = commands.add_parser("prepare", help="preprocess images into the on-disk cache")
    _add_data_args(prepare)
    prepare.set_defaults(func=cmd_prepare)

    train = commands.add_parser("train", help="train one model on normal images")
    train.add_argument("model", choices=model_names())
    train.add_argument("--out", required=True, help="run folder to create")
    train.add_argument("--preset", default="quick", help="quick | paper | a YAML file")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--epochs", type=int, help="override the preset's max_epochs")
    train.add_argument("--batch-size", type=int, help="override the preset's batch size")
    train.add_argument("--seed", type=int, help="training seed")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a model parameter"
    )
    _add_data_args(train)
    _add_trainer_args(train)
    train.set_defaults(func=cmd_train)

    phantoms = commands.add_parser("phantoms", help="save a figure of the synthetic phantoms")
    phantoms.add_argument("--out", default="docs/phantoms.png")
    phantoms.add_argument("--size", type=int, default=128)
    phantoms.add_argument("--seed", type=int, default=0)
    phantoms.set_defaults(func=cmd_phantoms)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
