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
from .errors import InputError, VAEAnomalyError

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
            if type(exc).__name__ == "NoArgsIsHelpError" or not exc.format_message():
                # `vae-anomaly` alone asks what it can do: the help, not an error
                if exc.format_message():
                    typer.echo(exc.format_message())
                sys.exit(0)
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Anomaly detection on images with variational autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts show "[default: ...]" literally (rich would eat it as markup)
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
        "--config",
        help="TOML file of settings, e.g. a run folder's config.toml (sections data, model, train, "
        "score, threshold); options given here override it.",
        show_default=False,
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
CompileOpt = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the training step: faster epochs after several seconds of compilation "
        "[default: no-compile].",
        show_default=False,
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="Training's arithmetic: fp32, or bf16 (layers in bfloat16, weights and loss in float32; "
        "much faster matrix products on CPUs with AVX512-BF16/AMX and on recent GPUs, maybe "
        "slower elsewhere) [default: fp32].",
        show_default=False,
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
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show progress bars (on a terminal only).")
]


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
    compile: CompileOpt = None,
    precision: PrecisionOpt = None,
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
                "compile": compile,
                "precision": precision,
            },
            "score": {"sample": sample_scores},
            "threshold": {"rule": threshold_rule},
        },
    )
    from .experiment import run_experiment
    from .report import check_run_dir, default_run_dir, format_text_report, write_run

    run_dir = out if out is not None else default_run_dir(config.name)
    check_run_dir(run_dir, force=force)  # fail before training, not after
    check_writable(run_dir, "--out")
    result = run_experiment(config, progress=progress, announce=typer.echo)
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


# -- train / score / evaluate: a detector on your own images ------------------------------------

ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing output.")]
ResizeFlagOpt = Annotated[
    bool,
    typer.Option("--resize", help="Resize images of another size to the model's (bilinear)."),
]
GrayscaleOpt = Annotated[
    bool,
    typer.Option("--grayscale", help="Convert colour images to grayscale for a grayscale model."),
]


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 28x28. Got {value!r}.")
    return int(parts[0]), int(parts[1])


def _config_file_sections(config_file: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The [data] and [threshold] tables a config file sets itself (to tell them from defaults)."""
    if config_file is None:
        return {}, {}
    from .config import tomllib

    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}, {}  # build_config reports it
    return raw.get("data", {}), raw.get("threshold", {})


def _check_output(path: Path, force: bool, what: str) -> None:
    if path.exists() and not force and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{what} {path} already exists; pass --force to overwrite it.")
    check_writable(path, what)


def check_writable(path: Path, what: str) -> None:
    """Fail before any work when ``path`` (a file or folder to be written) cannot be created: a
    temporary file is made, then removed, in the nearest folder that exists."""
    import tempfile

    target = path.absolute()
    existing = target
    while not existing.exists():
        existing = existing.parent
    if existing.is_file() and existing == target:  # a file to be replaced: its folder counts
        existing = existing.parent
    elif not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot write in {existing} ({exc.strerror}).") from None


@app.command()
def train(
    data: Annotated[
        str,
        typer.Argument(
            help="fashion-mnist, mnist, a folder of images, a folder of class folders, train/ and test/ "
            "class folders, an .npz (x, y) or a folder of four IDX files.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to save the model: a folder, or one file ending in .safetensors.",
            show_default=False,
        ),
    ],
    normal: Annotated[
        str | None,
        typer.Option(
            "--normal",
            help="Normal classes, names or indices, comma-separated [default: every class that has "
            "training images and is not --abnormal].",
            show_default=False,
        ),
    ] = None,
    abnormal: Annotated[
        str | None,
        typer.Option(
            "--abnormal",
            help="Abnormal classes: calibrate the threshold on them (validation split). Without: a "
            "normal-only rule. [default: none; the other classes with training images are normal]",
            show_default=False,
        ),
    ] = None,
    config_file: ConfigOpt = None,
    preset: PresetOpt = None,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    kl_weight: KLOpt = None,
    seed: SeedOpt = None,
    threshold_rule: Annotated[
        str | None,
        typer.Option(
            "--threshold-rule",
            help="Threshold rule [default: best_valid_accuracy with --abnormal, else "
            "train_mean_2.5std, or normal_quantile with --target-fpr].",
            show_default=False,
        ),
    ] = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            "--target-fpr",
            help="False-positive rate aimed at by normal_quantile [default: 0.05].",
            show_default=False,
        ),
    ] = None,
    resize: Annotated[
        str | None,
        typer.Option(
            "--resize",
            help="Resize training images to HEIGHTxWIDTH, e.g. 64x64.",
            show_default=False,
        ),
    ] = None,
    grayscale: Annotated[
        bool, typer.Option("--grayscale", help="Train on grayscale versions of colour images.")
    ] = False,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    compile: CompileOpt = None,
    precision: PrecisionOpt = None,
    download: DownloadOpt = None,
    force: ForceOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Train a detector on the normal images of DATA and save it.

    Data without a test part of their own (a folder of images, class folders, an .npz with only x
    and y) first keep 20% of each class as test images for `evaluate` (data.test_fraction in
    --config). The rest is split with the seed: 90% to train on, 10% to validate. With --abnormal,
    the threshold is calibrated on the validation images with the chosen rule; without, it comes
    from normal images only.
    """
    size = _parse_size(resize)
    file_data, file_threshold = _config_file_sections(config_file)
    config = build_config(
        config_file,
        preset,
        {
            "": {"seed": seed},
            "data": {
                "dataset": data,
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
                "compile": compile,
                "precision": precision,
            },
            "threshold": {"rule": threshold_rule, "target_fpr": target_fpr},
        },
    )
    out_is_file = out.suffix == ".safetensors"
    if out.exists() and not force and (out_is_file or (out / "model.safetensors").exists()):
        raise InputError(f"{out} already holds a model; pass --force to overwrite it.")
    if out.exists() and not out_is_file and not out.is_dir():
        raise InputError(
            f"--out {out} exists and is not a folder; give a folder or a file ending in .safetensors."
        )
    check_writable(out, "--out")
    from .experiment import train_detector

    detector, dataset, split = train_detector(
        config,
        normal_given=normal is not None or "normal" in file_data,
        abnormal_given=abnormal is not None or "abnormal" in file_data,
        rule_given=threshold_rule is not None or "rule" in file_threshold,
        target_fpr_given=target_fpr is not None or "target_fpr" in file_threshold,
        size=size,
        grayscale=grayscale,
        progress=progress,
    )
    names = dataset.class_names
    channels, height, width = detector.image_shape_
    detector.save(out, overwrite=True)
    t = detector.threshold_info_
    parts = split.summary()
    typer.echo(
        f"trained on {len(split.normal_train_x)} normal images ({', '.join(names[c] for c in split.normal)}) "
        f"of {dataset.name}, {height}x{width}x{channels}, {len(detector.history_.train_loss)} epochs "
        f"in {detector.train_seconds_:.1f} s; {parts['valid']} validation and {parts['test']} test "
        "images held out"
    )
    fallback = f" (fallback: {t.fallback})" if t.fallback else ""
    typer.echo(f"threshold {t.value:.6g} by {t.rule}{fallback}")
    typer.echo(f"model saved: {out}")


@app.command()
def score(
    model: Annotated[
        Path, typer.Argument(help="A model saved by `vae-anomaly train` (folder or .safetensors).")
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, BMP), folders (searched recursively), .npy/.npz arrays "
            "(N, H, W[, C]) and IDX files.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the rows to this .csv or .jsonl file [default: CSV on stdout].",
            show_default=False,
        ),
    ] = None,
    error_maps: Annotated[
        Path | None,
        typer.Option(
            "--error-maps",
            help="Folder for one PNG per image: the image beside its per-pixel error (bright = "
            "large).",
            show_default=False,
        ),
    ] = None,
    resize: ResizeFlagOpt = False,
    grayscale: GrayscaleOpt = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Skip unreadable files and images that do not fit, and list them."
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images read and scored at a time.")
    ] = 256,
    device: DeviceOpt = None,
    force: ForceOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Score images with a saved model: one row per image (source, index, score, threshold,
    is_anomaly; 1 = anomaly, score >= threshold) and a summary line."""
    import contextlib

    from tqdm import tqdm

    from .detector import VAEAnomalyDetector
    from .files import atomic_open
    from .inference import format_rows, iter_scored_batches, save_error_maps

    fmt = "csv"
    if out is not None:
        suffix = out.suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            raise InputError(f"--out must end in .csv or .jsonl. Got {out}.")
        fmt = suffix[1:]
        _check_output(out, force, "--out")
    if error_maps is not None:
        if error_maps.exists() and not error_maps.is_dir():
            raise InputError(f"--error-maps {error_maps} exists and is not a folder.")
        _check_output(error_maps, force, "--error-maps folder")
    for path in inputs:  # before loading the model and starting the progress bar
        if not path.exists():
            raise InputError(f"Input {path} does not exist.")
    detector = VAEAnomalyDetector.load(model, device=device or "auto")
    skipped: list[tuple[str, str]] = []
    n_scored = n_flagged = 0
    with contextlib.ExitStack() as stack:
        sink = (
            stack.enter_context(atomic_open(out, "w", encoding="utf-8", newline=""))
            if out is not None
            else None
        )
        bar = stack.enter_context(
            tqdm(
                unit="img",
                desc="scoring",
                disable=None if progress else True,
                file=sys.stderr,
                leave=False,
            )
        )
        map_names: set[str] = set()
        if error_maps is not None:
            error_maps.mkdir(parents=True, exist_ok=True)
        for batch in iter_scored_batches(
            detector,
            inputs,
            batch_size=batch_size,
            resize=resize,
            grayscale=grayscale,
            skip_bad=skip_bad,
            with_error_maps=error_maps is not None,
            skipped=skipped,
        ):
            text = format_rows(batch.rows(), fmt, header=n_scored == 0)
            if sink is not None:
                sink.write(text)
            else:
                typer.echo(text, nl=False)
            if error_maps is not None:
                save_error_maps(batch, error_maps, map_names)
            n_scored += len(batch.scores)
            n_flagged += int(batch.is_anomaly.sum())
            bar.update(len(batch.scores))
        if n_scored == 0:
            raise InputError(
                "no image could be scored"
                + (f": all {len(skipped)} input file(s) were skipped." if skipped else ".")
            )
    say = (lambda m: typer.echo(m)) if out is not None else (lambda m: typer.echo(m, err=True))
    summary = f"scored {n_scored} images, {n_flagged} flagged as anomalies (threshold {detector.threshold_:.6g}, {detector.threshold_rule_})"
    if skip_bad:
        summary += f"; skipped {len(skipped)} file(s)"
    if out is not None:
        summary += f"; rows in {out}"
    if error_maps is not None:
        summary += f"; error maps in {error_maps}"
    say(summary)
    for path, reason in skipped:
        say(f"skipped {path}: {reason}")


@app.command()
def evaluate(
    model: Annotated[
        Path, typer.Argument(help="A model saved by `vae-anomaly train` (folder or .safetensors).")
    ],
    data: Annotated[
        str,
        typer.Argument(
            help="Labelled data: fashion-mnist, mnist, class folders, an .npz (x, y) or an IDX folder.",
            show_default=False,
        ),
    ],
    normal: Annotated[
        str | None,
        typer.Option("--normal", help="Normal classes [default: the model's].", show_default=False),
    ] = None,
    abnormal: Annotated[
        str | None,
        typer.Option(
            "--abnormal", help="Abnormal classes [default: the model's].", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for metrics.json and scores.csv.", show_default=False),
    ] = None,
    data_dir: DataDirOpt = None,
    resize: ResizeFlagOpt = False,
    grayscale: GrayscaleOpt = False,
    device: DeviceOpt = None,
    download: DownloadOpt = None,
    force: ForceOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Measure a saved model on the test part of labelled data (split with the model's seed): the
    same report as `run`, at the model's thresholds, with AUROC and average precision."""
    if out is not None:
        _check_output(out, force, "--out folder")
    from .experiment import evaluate_saved_model
    from .report import format_text_report, write_evaluation

    result = evaluate_saved_model(
        str(model),
        data,
        normal=_split_classes(normal),
        abnormal=_split_classes(abnormal),
        data_dir=data_dir,
        resize=resize,
        grayscale=grayscale,
        device=device or "auto",
        download=True if download is None else download,
        progress=progress,
    )
    typer.echo(format_text_report(result.metrics), nl=False)
    if out is not None:
        write_evaluation(result, out)
        typer.echo(f"metrics.json and scores.csv in {out}")


def main() -> None:
    """Console-script entry point."""
    app()
