"""The ``vae-anomaly`` command line: the only module that prints or exits.

Every user mistake (bad option, unknown class, missing dataset, corrupt file) becomes one line on
stderr starting with ``error:`` and exit code 2; warnings become one ``warning:`` line each.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__
from .config import PRESETS, RunConfig, apply_preset, config_from_dict, load_config, validate_config
from .errors import VAEAnomalyError

_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
EXIT_USER_ERROR = 2

log = logging.getLogger("vae_anomaly")


class _OneLineErrors(TyperGroup):
    """A Typer group whose errors are one line on stderr and a non-zero exit code, never a traceback."""

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXCEPTION as exc:  # usage errors: bad option, missing argument, bad value
            if not exc.format_message():  # `vae-anomaly` alone: the help was printed
                sys.exit(exc.exit_code)
            ctx_hint = " (see --help)" if getattr(exc, "ctx", None) is not None else ""
            typer.echo(f"error: {exc.format_message()}{ctx_hint}", err=True)
            sys.exit(exc.exit_code)
        except VAEAnomalyError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("error: interrupted; nothing half-written was kept.", err=True)
            sys.exit(130)
        except OSError as exc:  # disk full, permission denied: the system's words and the file
            where = f" ({exc.filename})" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    typer.echo(f"warning: {message}", err=True)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Anomaly detection on images with variational autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vae-anomaly {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what happens (data found, timings).")
    ] = False,
) -> None:
    logging.basicConfig(
        format="%(message)s", level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr
    )


def build_config(
    config_file: Path | None, preset: str | None, overrides: dict[str, dict[str, Any]]
) -> RunConfig:
    """Defaults < preset < config file < command-line flags (only the flags that were given)."""
    config = RunConfig()
    if preset is not None:
        config = apply_preset(config, preset)
    if config_file is not None:
        config = load_config(config_file, config)
    cleaned = {}
    for section, values in overrides.items():
        given = {k: v for k, v in values.items() if v is not None}
        if section == "" and given:
            cleaned.update(given)
        elif given:
            cleaned[section] = given
    return validate_config(config_from_dict(cleaned, config, source="command line"))


def _split_classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()] or [""]


# Options shared by the commands that train.
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML file of settings (see `vae-anomaly run --help`).", show_default=False
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"Named settings: {', '.join(PRESETS)} (seed = the notebook).",
        show_default=False,
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="fashion-mnist (default), mnist, a class folder, train/test folders, an .npz or an IDX folder.",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir", help="Folder holding the Fashion-MNIST/MNIST IDX files.", show_default=False
    ),
]
NormalOpt = Annotated[
    str | None,
    typer.Option(
        "--normal",
        help="Normal classes, names or indices, comma-separated [default: 0,2,6 = T-shirt/top,Pullover,Shirt].",
        show_default=False,
    ),
]
AbnormalOpt = Annotated[
    str | None,
    typer.Option("--abnormal", help="Abnormal classes [default: 7 = Sneaker].", show_default=False),
]
EpochsOpt = Annotated[
    int | None, typer.Option("--epochs", help="Training epochs [default: 100].", show_default=False)
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", help="Training batch size [default: 128].", show_default=False),
]
KLOpt = Annotated[
    float | None,
    typer.Option(
        "--kl-weight",
        help="Weight of the KL term [default: 0, the seed; Geron: 0.0012755 = 1/784].",
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seeds the split, the weights and the batches [default: 0].",
        show_default=False,
    ),
]
RuleOpt = Annotated[
    str | None,
    typer.Option(
        "--threshold-rule",
        help="Threshold rule for predictions [default: best_valid_accuracy, the seed's threshold5].",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="auto, cpu or cuda [default: auto].", show_default=False),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads", help="CPU threads for torch [default: one per core].", show_default=False
    ),
]
SampleOpt = Annotated[
    bool | None,
    typer.Option(
        "--sample-scores/--mean-scores",
        help="Score from a sampled coding (random, like the seed) or the codings mean [default: mean].",
        show_default=False,
    ),
]
DownloadOpt = Annotated[
    bool | None,
    typer.Option(
        "--download/--no-download",
        help="Download Fashion-MNIST/MNIST when not found on disk [default: download].",
        show_default=False,
    ),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


@app.command()
def run(
    config_file: ConfigOpt = None,
    preset: PresetOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    normal: NormalOpt = None,
    abnormal: AbnormalOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    kl_weight: KLOpt = None,
    seed: SeedOpt = None,
    threshold_rule: RuleOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    sample_scores: SampleOpt = None,
    download: DownloadOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run folder [default: runs/<name or timestamp>].", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (folder runs/NAME).", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run folder.")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Reproduce the seed experiment: train on the normal classes, set the thresholds, report test metrics.

    Trains the seed's VAE on the normal classes, scores validation and test images by reconstruction
    error, computes every threshold rule (the seed's five and two more) and prints each one's confusion
    matrix, accuracy, precision, recall and F1, with AUROC and average precision. Writes a run folder.
    """
    config = build_config(
        config_file,
        preset,
        {
            "": {"seed": seed, "name": name},
            "data": {
                "dataset": dataset,
                "data_dir": data_dir,
                "normal": _split_classes(normal),
                "abnormal": _split_classes(abnormal),
                "download": download,
            },
            "train": {
                "epochs": epochs,
                "batch_size": batch_size,
                "kl_weight": kl_weight,
                "device": device,
                "threads": threads,
            },
            "score": {"sample": sample_scores},
            "threshold": {"rule": threshold_rule},
        },
    )
    from .experiment import run_experiment
    from .report import check_run_dir, default_run_dir, format_text_report, write_run

    run_dir = out if out is not None else default_run_dir(config.name)
    check_run_dir(run_dir, force=force)  # fail before training, not after
    result = run_experiment(config, progress=progress)
    from .models import model_summary

    typer.echo(model_summary(result.detector.model_))
    write_run(result, run_dir, force=force)
    typer.echo(format_text_report(result.metrics), nl=False)
    typer.echo(f"report: {run_dir / 'report.html'}")
    t = result.timings
    typer.echo(
        f"run folder: {run_dir}  (training {t['train_s']:.1f} s, total {t['total_s']:.1f} s)"
    )


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder written by `vae-anomaly run`.", show_default=False)
    ],
    images: Annotated[
        bool,
        typer.Option(
            "--images/--no-images",
            help="Draw the figures that need the model and the dataset (re-loaded, never downloaded).",
        ),
    ] = True,
) -> None:
    """Regenerate figures/*.png and report.html of a finished run, without retraining."""
    import time

    from .report import write_report

    start = time.perf_counter()
    path = write_report(run_dir, load_images=images)
    typer.echo(f"report: {path}  ({time.perf_counter() - start:.1f} s)")


def main() -> None:
    """Console-script entry point."""
    app()
