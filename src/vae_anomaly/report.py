"""The run folder: config, history, metrics, scores, model, figures and report; and its text report.

A run folder is written into a temporary folder beside its destination and renamed into place at
the end, so a crashed or interrupted run never leaves a half-written folder, and an existing one is
never overwritten unless asked.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import config_to_toml
from .errors import InputError, VAEAnomalyError
from .files import write_bytes_atomic, write_json_atomic, write_text_atomic

#: The seed notebook's published test results (one Colab GPU run), for side-by-side comparison.
SEED_PUBLISHED: dict[str, dict[str, Any]] = {
    "train_mean_2.5std": {"confusion_matrix": [[694, 306], [120, 2880]], "accuracy": 0.8935, "precision": 0.90395, "recall": 0.96},
    "abnormal_valid_mean_minus_std": {"value": 0.09723},
    "normal_valid_mean_plus_std": {"value": 0.07698},
    "valid_midpoint": {"value": 0.08711, "confusion_matrix": [[930, 70], [277, 2723]], "accuracy": 0.91325, "precision": 0.97494, "recall": 0.90767},
    "best_valid_accuracy": {"value": 0.09235, "valid_accuracy": 0.92899, "confusion_matrix": [[895, 105], [215, 2785]], "accuracy": 0.92, "precision": 0.96367, "recall": 0.92833},
}  # fmt: skip

SCORE_COLUMNS = (
    "subset",
    "index",
    "class",
    "class_name",
    "is_anomaly",
    "score",
    "predicted_anomaly",
)


def is_seed_setting(metrics: dict[str, Any]) -> bool:
    """Whether a run used the seed's data and classes, so the seed's numbers are comparable."""
    data = metrics.get("dataset", {})
    return (
        data.get("name") == "fashion-mnist"
        and data.get("normal") == [0, 2, 6]
        and data.get("abnormal") == [7]
    )


def format_text_report(metrics: dict[str, Any]) -> str:
    """The seed's printed report (``print_stats``) for every threshold rule, plus F1, AUROC and AP.

    Convention of the seed: T = normal is the positive class; confusion matrix rows = label (F, T),
    columns = prediction (F, T).
    """
    out = io.StringIO()
    stats = metrics["score_statistics"]
    selected = metrics["selected_threshold"]
    seed = SEED_PUBLISHED if is_seed_setting(metrics) else {}
    nt, at = stats["normal_test"], stats["abnormal_test"]
    print(
        f"test scores ({metrics['score']['name']}, {metrics['score']['note']}): "
        f"normal mean {_f(nt['mean'])} std {_f(nt['std'])}; abnormal mean {_f(at['mean'])} std {_f(at['std'])}",
        file=out,
    )
    print(
        "confusion matrix: rows = label (F = abnormal, T = normal), columns = predicted (F, T)",
        file=out,
    )
    print(
        f"{'rule':<34} {'seed name':<11} {'threshold':>9}  {'confusion':<22} {'acc':>7} {'prec':>7} {'recall':>7} {'F1':>7}",
        file=out,
    )
    for rule, t in metrics["thresholds"].items():
        test = t["test"]
        mark = " *" if rule == selected else ""
        cm = json.dumps(test["confusion_matrix"]).replace(" ", "")
        print(
            f"{rule + mark:<34} {t['seed_name'] or '-':<11} {_f(t['value']):>9}  {cm:<22} "
            f"{test['accuracy']:>7.4f} {test['precision']:>7.4f} {test['recall']:>7.4f} {test['f1']:>7.4f}",
            file=out,
        )
        if t.get("fallback"):
            print(f"{'':<34} fallback: {t['fallback']}", file=out)
        if rule in seed and "accuracy" in seed[rule]:
            s = seed[rule]
            cm = json.dumps(s["confusion_matrix"]).replace(" ", "")
            print(
                f"{'  seed notebook':<34} {'':<11} {_f(s.get('value')):>9}  {cm:<22} {s['accuracy']:>7.4f} "
                f"{s['precision']:>7.4f} {s['recall']:>7.4f} {'':>7}",
                file=out,
            )
    ranking = metrics["ranking"]["test"]
    print(f"* selected threshold: {selected}", file=out)
    print(
        f"test AUROC {_f(ranking['auroc'])}, average precision {_f(ranking['average_precision'])} "
        "(threshold-free; positive = anomaly)",
        file=out,
    )
    return out.getvalue()


def _f(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def default_run_dir(name: str | None, root: str | Path = "runs") -> Path:
    """``runs/<name>``, or ``runs/<YYYYmmdd-HHMMSS>`` when no name is given."""
    if name is None:
        import datetime

        name = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / name


def check_run_dir(path: str | Path, *, force: bool) -> Path:
    """Refuse an existing non-empty ``path`` unless ``force``; return it as a Path."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not force:
        raise InputError(
            f"run folder {path} already exists; choose another --out/--name or pass --force to replace it."
        )
    return path


@contextlib.contextmanager
def staged_dir(path: str | Path, *, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename."""
    path = check_run_dir(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)


def score_rows(result: Any) -> dict[str, list[dict[str, Any]]]:
    """Rows of scores.csv (test) and of scores_valid.csv / scores_train.csv, per subset."""
    split, scores, threshold = result.split, result.scores, result.threshold
    names = result.dataset.class_names
    subsets = {
        "test": (split.test_index, split.test_y, split.test_is_anomaly, scores["test"]),
        "valid": (split.valid_index, split.valid_y, split.valid_is_anomaly, scores["valid"]),
        "normal_train": (
            split.normal_train_index,
            split.normal_train_y,
            np.zeros(len(split.normal_train_y), bool),
            scores["normal_train"],
        ),
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    for subset, (index, classes, anomaly, values) in subsets.items():
        rows[subset] = [
            {
                "subset": subset,
                "index": int(i),
                "class": int(c),
                "class_name": names[int(c)],
                "is_anomaly": int(a),
                "score": f"{float(s):.8g}",
                "predicted_anomaly": int(s >= threshold),
            }
            for i, c, a, s in zip(index, classes, anomaly, values, strict=True)
        ]
    return rows


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def history_csv(history: Any) -> str:
    """history.csv: epoch, train_loss, valid_loss, seconds, best (1 on the kept epoch)."""
    rows = []
    for i, loss in enumerate(history.train_loss):
        epoch = i + 1
        rows.append(
            {
                "epoch": epoch,
                "train_loss": f"{loss:.6f}",
                "valid_loss": f"{history.valid_loss[i]:.6f}" if i < len(history.valid_loss) else "",
                "seconds": f"{history.epoch_seconds[i]:.4f}",
                "best": int(epoch == history.best_epoch),
            }
        )
    return _csv_text(rows, ("epoch", "train_loss", "valid_loss", "seconds", "best"))


def write_evaluation(result: Any, out_dir: str | Path) -> None:
    """Write ``metrics.json`` and ``scores.csv`` (test images) of an evaluation into ``out_dir``."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "metrics.json", result.metrics)
    write_text_atomic(out_dir / "scores.csv", _csv_text(score_rows(result)["test"], SCORE_COLUMNS))


def write_run(
    result: Any, out_dir: str | Path, *, force: bool = False, figures: bool = True
) -> Path:
    """Write the run folder of an ``experiment.ExperimentResult`` to ``out_dir`` (atomically).

    Layout: ``config.toml``, ``history.csv``, ``metrics.json``, ``scores.csv`` (test images),
    ``scores_valid.csv``, ``scores_train.csv``, ``report.txt``, ``model/`` (safetensors + JSON),
    and with ``figures`` also ``figures/*.png`` and ``report.html`` (see :func:`write_report`).
    """
    out_dir = Path(out_dir)
    with staged_dir(out_dir, force=force) as stage:
        write_text_atomic(stage / "config.toml", config_to_toml(result.config))
        write_text_atomic(stage / "history.csv", history_csv(result.detector.history_))
        write_json_atomic(stage / "metrics.json", result.metrics)
        rows = score_rows(result)
        write_text_atomic(stage / "scores.csv", _csv_text(rows["test"], SCORE_COLUMNS))
        write_text_atomic(stage / "scores_valid.csv", _csv_text(rows["valid"], SCORE_COLUMNS))
        write_text_atomic(
            stage / "scores_train.csv", _csv_text(rows["normal_train"], SCORE_COLUMNS)
        )
        write_text_atomic(stage / "report.txt", format_text_report(result.metrics))
        result.detector.save(
            stage / "model",
            extra_metadata={
                "class_names": list(result.dataset.class_names),
                "dataset": result.metrics["dataset"],
            },
        )
        if figures:
            write_report(stage, result=result, name=out_dir.name)
    return out_dir


# -- figures and report.html ---------------------------------------------------------------------

FIGURES_DIR = "figures"
REPORT_HTML = "report.html"
_SEED_RULE_ORDER = ("threshold5", "threshold4", "threshold2", "threshold3", "threshold1")
_SUBSETS = (
    ("normal_train", "normal train"),
    ("valid", "validation"),
    ("normal_valid", "normal validation"),
    ("abnormal_valid", "abnormal validation"),
    ("test", "test"),
    ("normal_test", "normal test"),
    ("abnormal_test", "abnormal test"),
)


@dataclasses.dataclass
class _RunData:
    """What the report needs from a run, read from its folder or taken from memory."""

    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    scores: dict[str, dict[str, np.ndarray]]  # subset -> score, is_anomaly, class, index
    config_text: str
    config: Any = None
    detector: Any = None
    split: Any = None
    images_missing: str | None = None  # why the image figures cannot be drawn
    name: str = ""  # the run's name in titles (the staged folder has a temporary name)


@dataclasses.dataclass
class _Figure:
    name: str  # file name in figures/
    title: str
    caption: str  # how to read it
    png: bytes | None = None
    error: str | None = None


def _read_scores(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise InputError(f"{path} is missing; it is not a complete run folder.")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return {
            "index": np.array([int(r["index"]) for r in rows], np.int64),
            "class": np.array([int(r["class"]) for r in rows], np.int64),
            "is_anomaly": np.array([r["is_anomaly"] == "1" for r in rows], bool),
            "score": np.array([float(r["score"]) for r in rows], np.float64),
        }
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path} is not a scores file of vae-anomaly ({exc}).") from None


def _read_history(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        raise InputError(f"{path} is missing; it is not a complete run folder.")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return {
            "train_loss": [float(r["train_loss"]) for r in rows],
            "valid_loss": [float(r["valid_loss"]) for r in rows if r["valid_loss"]],
        }
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path} is not a history file of vae-anomaly ({exc}).") from None


def _split_scores(scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Add the normal_/abnormal_ subsets of valid and test."""
    out = dict(scores)
    for subset in ("valid", "test"):
        s = scores[subset]
        out[f"normal_{subset}"] = {k: v[~s["is_anomaly"]] for k, v in s.items()}
        out[f"abnormal_{subset}"] = {k: v[s["is_anomaly"]] for k, v in s.items()}
    return out


def _read_run(run_dir: Path, *, load_images: bool) -> _RunData:
    """Read a run folder; a missing or unreadable required file is an InputError naming it."""
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist.")
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise InputError(
            f"{metrics_path} is missing; is {run_dir} a finished vae-anomaly run folder?"
        )
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["thresholds"], metrics["dataset"], metrics["ranking"]  # noqa: B018
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{metrics_path} is not a metrics file of vae-anomaly ({exc}).") from None
    config_path = run_dir / "config.toml"
    if not config_path.exists():
        raise InputError(f"{config_path} is missing; it is not a complete run folder.")
    scores = {
        "test": _read_scores(run_dir / "scores.csv"),
        "valid": _read_scores(run_dir / "scores_valid.csv"),
        "normal_train": _read_scores(run_dir / "scores_train.csv"),
    }
    data = _RunData(
        run_dir=run_dir,
        metrics=metrics,
        history=_read_history(run_dir / "history.csv"),
        scores=_split_scores(scores),
        config_text=config_path.read_text(encoding="utf-8"),
    )
    from .config import load_config

    data.config = load_config(config_path)
    if load_images:
        _load_images(data)
    return data


def _load_images(data: _RunData) -> None:
    """Load the model and re-make the run's split; on failure record why in ``images_missing``."""
    from .detector import VAEAnomalyDetector
    from .experiment import prepare_data

    try:
        data.detector = VAEAnomalyDetector.load(data.run_dir / "model", device="cpu")
    except (VAEAnomalyError, OSError) as exc:
        data.images_missing = f"the model could not be loaded: {exc}"
        return
    config = dataclasses.replace(
        data.config, data=dataclasses.replace(data.config.data, download=False)
    )
    try:
        _, split = prepare_data(config)
    except (VAEAnomalyError, OSError) as exc:
        data.images_missing = f"the dataset could not be loaded (no download is tried): {exc}"
        return
    if not np.array_equal(split.test_index, data.scores["test"]["index"]) or not np.array_equal(
        split.valid_index, data.scores["valid"]["index"]
    ):
        data.images_missing = (
            "the dataset found now does not give the run's split (scores.csv indices differ)"
        )
        return
    data.split = split


def _from_result(result: Any, run_dir: Path) -> _RunData:
    split, scores = result.split, result.scores
    history = result.detector.history_
    raw = {
        "test": {
            "index": split.test_index,
            "class": split.test_y,
            "is_anomaly": split.test_is_anomaly,
            "score": scores["test"],
        },
        "valid": {
            "index": split.valid_index,
            "class": split.valid_y,
            "is_anomaly": split.valid_is_anomaly,
            "score": scores["valid"],
        },
        "normal_train": {
            "index": split.normal_train_index,
            "class": split.normal_train_y,
            "is_anomaly": np.zeros(len(split.normal_train_y), bool),
            "score": scores["normal_train"],
        },
    }
    raw = {k: {n: np.asarray(a) for n, a in v.items()} for k, v in raw.items()}
    return _RunData(
        run_dir=run_dir,
        metrics=result.metrics,
        history={"train_loss": list(history.train_loss), "valid_loss": list(history.valid_loss)},
        scores=_split_scores(raw),
        config_text=config_to_toml(result.config),
        config=result.config,
        detector=result.detector,
        split=split,
    )


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _subset_images(split: Any, subset: str) -> np.ndarray:
    return {
        "normal_train": split.normal_train_x,
        "valid": split.valid_x,
        "normal_valid": split.normal_valid_x,
        "abnormal_valid": split.abnormal_valid_x,
        "test": split.test_x,
        "normal_test": split.test_x[~split.test_is_anomaly],
        "abnormal_test": split.test_x[split.test_is_anomaly],
    }[subset]


def _figure_specs(data: _RunData) -> list[tuple[str, str, str, Any, bool]]:
    """(file name, title, caption, builder, needs images) of every figure, in report order."""
    from . import plots

    metrics = data.metrics
    thresholds = metrics["thresholds"]
    selected = metrics["selected_threshold"]
    seed_rules = {t["seed_name"]: rule for rule, t in thresholds.items() if t.get("seed_name")}
    label_of = {rule: f"{seed_rules_name} {rule}" for seed_rules_name, rule in seed_rules.items()}
    for rule in thresholds:
        label_of.setdefault(rule, rule)
    colours = {
        label_of[r]: c
        for r, c in plots.threshold_colours(
            {r: t.get("seed_name") for r, t in thresholds.items()}
        ).items()
    }
    score_name = metrics.get("score", {}).get("name", "score")
    s = data.scores

    def lines(*seed_names: str) -> dict[str, float]:
        return {
            label_of[seed_rules[n]]: thresholds[seed_rules[n]]["value"]
            for n in seed_names
            if n in seed_rules
        }

    def hist(groups: dict[str, np.ndarray], seed_names: tuple[str, ...], title: str) -> Any:
        return lambda: plots.score_histogram(
            groups, lines(*seed_names), colours, title, score_name=score_name
        )

    names = metrics["dataset"]["class_names"]
    normal_names = ", ".join(metrics["dataset"]["normal_names"])
    abnormal_names = ", ".join(metrics["dataset"]["abnormal_names"])
    specs: list[tuple[str, str, str, Any, bool]] = [
        (
            "01_loss.png",
            "Training and validation loss",
            "Loss per epoch on the normal training and normal validation images; lower is better, the dashed line is the epoch whose weights were kept. Curves that part ways mean overfitting.",
            lambda: plots.loss_curves(
                data.history["train_loss"],
                data.history["valid_loss"],
                metrics["training"].get("best_epoch"),
            ),
            False,
        ),
    ]
    for k, (subset, label) in enumerate(_SUBSETS):
        specs.append(
            (
                f"02{chr(ord('a') + k)}_reconstructions_{subset}.png",
                f"Reconstructions: {label}",
                f"Top row: the first 30 {label} images; bottom row: what the VAE rebuilt. Normal images ({normal_names}) should come back sharp, anomalies ({abnormal_names}) blurred or turned into a normal class.",
                (lambda subset=subset, label=label: _reconstruction_figure(data, subset, label)),
                True,
            )
        )
    specs.append(
        (
            "03_pixel_plots.png",
            "Pixels of one normal and one abnormal image",
            "Each image's pixels in a row (input red, reconstruction green); the shaded area is the reconstruction error, the anomaly score is its mean. A larger shaded area means more anomalous.",
            lambda: _pixel_figure(data),
            True,
        )
    )
    all_five = _SEED_RULE_ORDER
    specs += [
        (
            "04a_hist_normal_train.png",
            "Scores of the normal training images",
            "Histogram of the anomaly scores of the images the VAE trained on; threshold1 is their mean + 2.5 std.",
            hist(
                {"normal train": s["normal_train"]["score"]},
                ("threshold1",),
                "Scores: normal train",
            ),
            False,
        ),
        (
            "04b_hist_abnormal_valid.png",
            "Scores of the abnormal validation images",
            "Anomalies should sit to the right of the thresholds; threshold2 is their mean minus one std.",
            hist(
                {"abnormal validation": s["abnormal_valid"]["score"]},
                ("threshold2", "threshold1"),
                "Scores: abnormal validation",
            ),
            False,
        ),
        (
            "04c_hist_normal_valid.png",
            "Scores of the normal validation images",
            "Normal images should sit to the left of the thresholds; threshold3 is their mean plus one std.",
            hist(
                {"normal validation": s["normal_valid"]["score"]},
                ("threshold3", "threshold2", "threshold1"),
                "Scores: normal validation",
            ),
            False,
        ),
        (
            "04d_hist_valid.png",
            "Scores of all validation images",
            "Normal (blue) and abnormal (orange) validation scores with every seed threshold; the less the two overlap, the better any threshold can separate them.",
            hist(
                {
                    "normal validation": s["normal_valid"]["score"],
                    "abnormal validation": s["abnormal_valid"]["score"],
                },
                all_five,
                "Scores: all validation",
            ),
            False,
        ),
        (
            "04e_hist_test.png",
            "Scores of all test images",
            "Normal (blue) and abnormal (orange) test scores with every seed threshold: images right of a line are flagged as anomalies by that rule.",
            hist(
                {
                    "normal test": s["normal_test"]["score"],
                    "abnormal test": s["abnormal_test"]["score"],
                },
                all_five,
                "Scores: all test",
            ),
            False,
        ),
    ]
    sweep = metrics.get("threshold_sweep")
    if sweep:
        chosen = thresholds.get("best_valid_accuracy", {}).get("value")
        specs.append(
            (
                "05_threshold_sweep.png",
                "Threshold sweep on validation",
                "Validation accuracy of each of the 100 candidate thresholds between the normal and abnormal validation means; the red dot is threshold5, the most accurate.",
                lambda: plots.threshold_sweep(sweep["candidates"], sweep["accuracies"], chosen),
                False,
            )
        )
    specs += [
        (
            "06a_generated.png",
            "Generated images",
            "12 images decoded from random codings ~ N(0, I). With the seed's KL weight of 0 the codings are not pulled towards N(0, I), so these may look like noise or blends.",
            lambda: _generated_figure(data, interpolate=False),
            True,
        ),
        (
            "06b_interpolation.png",
            "Semantic interpolation",
            "The 3x4 grid of random codings resized bilinearly to 5x7 and decoded: neighbours blend smoothly if the latent space is smooth.",
            lambda: _generated_figure(data, interpolate=True),
            True,
        ),
        (
            "07_roc_pr.png",
            "ROC and precision-recall on test",
            "Threshold-free quality of the score (positive = anomaly): the closer the curves hug the top-left (ROC) and top-right (PR) corners, the better. Dots: each threshold rule's operating point.",
            lambda: plots.roc_pr_curves(
                s["test"]["is_anomaly"],
                s["test"]["score"],
                {label_of[r]: t["value"] for r, t in thresholds.items()},
                {label_of[r]: colours[label_of[r]] for r in thresholds},
            ),
            False,
        ),
        (
            "08_confusion_matrix.png",
            "Confusion matrix at the selected threshold",
            f"Test images counted by label (rows) and prediction (columns) at {selected}, in the seed's convention (T = normal, F = abnormal): the diagonal is right.",
            lambda: plots.confusion_heatmap(
                thresholds[selected]["test"]["confusion_matrix"], f"Test, {label_of[selected]}"
            ),
            False,
        ),
        (
            "09a_most_anomalous.png",
            "The most anomalous test images",
            "The highest-scoring test images: input, reconstruction and where the error is (bright = large error).",
            lambda: _gallery_figure(data, "most_anomalous", names),
            True,
        ),
        (
            "09b_false_positives.png",
            "False positives",
            f"Normal test images flagged as anomalies at {selected}, highest score first: what the detector confuses with {abnormal_names}.",
            lambda: _gallery_figure(data, "false_positives", names),
            True,
        ),
        (
            "09c_false_negatives.png",
            "False negatives",
            f"Anomalies that passed as normal at {selected}, lowest score first: the VAE reconstructed them too well.",
            lambda: _gallery_figure(data, "false_negatives", names),
            True,
        ),
        (
            "10_latent_pca.png",
            "Codings of the test images",
            "The codings means of the test images on their first two principal components, one colour per class: anomalies far from the normal clusters are easy to detect.",
            lambda: _latent_figure(data, names),
            True,
        ),
    ]
    return specs


def _reconstruction_figure(data: _RunData, subset: str, label: str) -> Any:
    from . import plots

    images = _subset_images(data.split, subset)[:30]
    recon = data.detector.reconstruct(images)
    return plots.reconstruction_grid(_display(images), recon, label)


def _display(images: np.ndarray) -> np.ndarray:
    """Images in the model layout ``(N, C, H, W)`` float in [0, 1]."""
    from .images import to_model_layout

    return to_model_layout(images)


def _pixel_figure(data: _RunData) -> Any:
    from . import plots

    normal = _subset_images(data.split, "normal_test")[:1]
    abnormal = _subset_images(data.split, "abnormal_test")[:1]
    if not len(normal) or not len(abnormal):
        raise InputError("the test set needs a normal and an abnormal image")
    return plots.pixel_plots(
        _display(normal)[0],
        data.detector.reconstruct(normal)[0],
        _display(abnormal)[0],
        data.detector.reconstruct(abnormal)[0],
    )


def _generated_figure(data: _RunData, *, interpolate: bool) -> Any:
    import torch

    from . import plots

    latent = data.detector.model_.latent_dim
    rng = np.random.default_rng(data.metrics.get("seed", 0))
    codings = rng.standard_normal((12, latent)).astype(np.float32)
    if not interpolate:
        return plots.image_grid(
            data.detector.decode(codings), 3, 4, "12 images decoded from codings ~ N(0, I)"
        )
    grid = torch.as_tensor(codings).reshape(3, 4, latent).permute(2, 0, 1)[None]
    grid = torch.nn.functional.interpolate(grid, size=(5, 7), mode="bilinear", align_corners=True)
    codings = grid[0].permute(1, 2, 0).reshape(35, latent).numpy()
    return plots.image_grid(
        data.detector.decode(codings), 5, 7, "The 3x4 codings resized to 5x7 and decoded"
    )


def _gallery_figure(data: _RunData, kind: str, names: list[str], n: int = 8) -> Any:
    from . import plots

    test = data.scores["test"]
    score, anomaly = test["score"], test["is_anomaly"]
    threshold = data.metrics["thresholds"][data.metrics["selected_threshold"]]["value"]
    order = np.argsort(-score, kind="stable")
    if kind == "most_anomalous":
        chosen, title = order[:n], f"The {n} highest-scoring test images"
    elif kind == "false_positives":
        chosen = [i for i in order if score[i] >= threshold and not anomaly[i]][:n]
        title = f"False positives: normal images scoring >= {threshold:.4f} ({int(np.sum((score >= threshold) & ~anomaly))} in all)"
    else:
        chosen = [i for i in order[::-1] if score[i] < threshold and anomaly[i]][:n]
        title = f"False negatives: anomalies scoring < {threshold:.4f} ({int(np.sum((score < threshold) & anomaly))} in all)"
    chosen = np.asarray(chosen, np.int64)
    images = data.split.test_x[chosen]
    titles = [f"{names[int(test['class'][i])]}\nscore {score[i]:.4f}" for i in chosen]
    if not len(chosen):
        return plots.example_gallery(
            np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), [], title
        )
    return plots.example_gallery(
        _display(images),
        data.detector.reconstruct(images),
        data.detector.error_maps(images),
        titles,
        title,
    )


def _latent_figure(data: _RunData, names: list[str]) -> Any:
    from . import plots

    codings = data.detector.encode(data.split.test_x)
    return plots.latent_pca(codings, data.split.test_y, names, data.metrics["dataset"]["abnormal"])


def _render_figures(data: _RunData) -> list[_Figure]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    figures = []
    for name, title, caption, build, needs_images in _figure_specs(data):
        figure = _Figure(name, title, caption)
        if needs_images and data.split is None:
            figure.error = data.images_missing or "the images are not available"
        else:
            try:
                figure.png = _png(build())
            except Exception as exc:  # a figure that fails is listed as missing, not fatal
                figure.error = f"{type(exc).__name__}: {exc}"
        figures.append(figure)
    return figures


def write_report(
    run_dir: str | Path, *, result: Any = None, load_images: bool = True, name: str | None = None
) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` for the run folder ``run_dir``.

    Everything is read from the folder (``metrics.json``, ``history.csv``, ``scores*.csv``,
    ``config.toml``, ``model/``); the image figures re-load the dataset and re-make the seed's split
    (never downloading). ``result`` (an ``experiment.ExperimentResult``) skips the reading, for a run
    that has just finished. A missing required file raises :class:`InputError` naming it; a figure
    that cannot be drawn is listed in the report as missing, with the reason.

    Returns:
        The path of ``report.html``.
    """
    import time

    run_dir = Path(run_dir)
    start = time.perf_counter()
    data = (
        _from_result(result, run_dir)
        if result is not None
        else _read_run(run_dir, load_images=load_images)
    )
    data.name = name or run_dir.name
    if result is None and not load_images:
        data.images_missing = "images were not requested"
    figures = _render_figures(data)
    figures_dir = run_dir / FIGURES_DIR
    figures_dir.mkdir(exist_ok=True)
    for figure in figures:
        if figure.png is not None:
            write_bytes_atomic(figures_dir / figure.name, figure.png)
    keep = {f.name for f in figures if f.png is not None}
    for stale in figures_dir.glob("*.png"):
        if stale.name not in keep:
            stale.unlink()
    summary = None
    if data.detector is not None:
        from .models import model_summary

        summary = model_summary(data.detector.model_)
    html = render_html(data, figures, summary, seconds=time.perf_counter() - start)
    path = run_dir / REPORT_HTML
    write_text_atomic(path, html)
    return path


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1250px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; display: block; overflow-x: auto;
        max-width: 100%; }  /* a wide table scrolls by itself, the page does not */
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
tr.selected td { font-weight: bold; background: #fff6d8; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.3em; } .missing { color: #a00; }
.muted { color: #666; font-size: 0.9em; } .cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1.2em; }
.card b { font-size: 1.6em; display: block; }
"""


def _e(value: Any) -> str:
    import html

    return html.escape(str(value))


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cm(matrix: Any) -> str:
    return "-" if matrix is None else _e(json.dumps(matrix).replace(" ", ""))


def render_html(
    data: _RunData, figures: list[_Figure], model_summary_text: str | None, *, seconds: float = 0.0
) -> str:
    """The report as one HTML page with its figures embedded as PNG data URIs (no scripts, no fetches)."""
    import base64
    import datetime

    m = data.metrics
    d = m["dataset"]
    split = d.get("split", {})
    selected = m["selected_threshold"]
    training = m.get("training", {})
    p: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>vae-anomaly report: {_e(data.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>vae-anomaly report: {_e(data.name)}</h1>",
        f'<p class="muted">vae-anomaly {_e(m.get("package_version", "?"))}; report written '
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} in {seconds:.1f} s. Normal: "
        f"{_e(', '.join(d['normal_names']))}; abnormal: {_e(', '.join(d['abnormal_names']))}.</p>",
    ]
    ranking = m["ranking"]
    test = m["thresholds"][selected]["test"]
    p.append('<div class="cards">')
    for label, value in (
        ("test AUROC", _num(ranking["test"]["auroc"])),
        ("test average precision", _num(ranking["test"]["average_precision"])),
        (f"test accuracy at {selected}", _num(test["accuracy"])),
        ("best epoch", f"{training.get('best_epoch', '-')} / {training.get('epochs', '-')}"),
    ):
        p.append(f'<div class="card"><b>{_e(value)}</b>{_e(label)}</div>')
    p.append("</div>")

    # 1. config and data
    p.append("<h2>Config and data</h2><table>")
    rows = [
        ("dataset", f"{d['name']} ({d.get('source', '?')})"),
        ("image shape (C, H, W)", d.get("image_shape")),
        ("normal classes", ", ".join(d["normal_names"])),
        ("abnormal classes", ", ".join(d["abnormal_names"])),
        ("normal train images", split.get("normal_train")),
        (
            "validation images (normal / abnormal)",
            f"{split.get('valid')} ({split.get('valid_normal')} / {split.get('valid_abnormal')})",
        ),
        (
            "test images (normal / abnormal)",
            f"{split.get('test')} ({split.get('test_normal')} / {split.get('test_abnormal')})",
        ),
        (
            "model",
            f"{m.get('model', {}).get('name')}, {m.get('model', {}).get('n_parameters', 0):,} parameters",
        ),
        ("score", f"{m.get('score', {}).get('name')}, {m.get('score', {}).get('note')}"),
        ("epochs (best)", f"{training.get('epochs')} ({training.get('best_epoch')})"),
        (
            "final train loss / best valid loss",
            f"{_num(training.get('final_train_loss'))} / {_num(training.get('best_valid_loss'))}",
        ),
        ("seed, device", f"{m.get('seed')}, {m.get('device')}"),
        ("timings", ", ".join(f"{k} {v:.1f}" for k, v in m.get("timings", {}).items())),
    ]
    p += [f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>' for k, v in rows]
    p.append("</table>")
    p.append(f"<details><summary>config.toml</summary><pre>{_e(data.config_text)}</pre></details>")
    if model_summary_text:
        p.append(
            f"<details open><summary>Model summary</summary><pre>{_e(model_summary_text)}</pre></details>"
        )

    # 2. metrics per threshold rule
    p.append("<h2>Metrics per threshold rule (test)</h2>")
    p.append(
        f'<p class="muted">{_e(m.get("conventions", {}).get("confusion_matrix", ""))}. '
        f"Precision, recall and F1: {_e(m.get('conventions', {}).get('precision_recall_f1', ''))}. "
        f"An image is an anomaly when its score &ge; the threshold. The selected rule is highlighted.</p>"
    )
    p.append(
        '<table><tr><th class="l">rule</th><th class="l">seed name</th><th>threshold</th><th>accuracy</th>'
        "<th>precision</th><th>recall</th><th>F1</th><th>confusion matrix</th>"
        "<th>precision (anomaly)</th><th>recall (anomaly)</th><th>valid accuracy</th></tr>"
    )
    for rule, t in m["thresholds"].items():
        tt = t["test"]
        cls = ' class="selected"' if rule == selected else ""
        fallback = (
            f'<br><span class="muted">{_e(t["fallback"])}</span>' if t.get("fallback") else ""
        )
        p.append(
            f'<tr{cls}><td class="l" title="{_e(t.get("description", ""))}">{_e(rule)}{fallback}</td>'
            f'<td class="l">{_e(t.get("seed_name") or "-")}</td><td>{_num(t["value"], 5)}</td>'
            f"<td>{_num(tt['accuracy'])}</td><td>{_num(tt['precision'])}</td><td>{_num(tt['recall'])}</td>"
            f"<td>{_num(tt['f1'])}</td><td>{_cm(tt['confusion_matrix'])}</td>"
            f"<td>{_num(tt.get('precision_anomaly'))}</td><td>{_num(tt.get('recall_anomaly'))}</td>"
            f"<td>{_num(t.get('valid', {}).get('accuracy'))}</td></tr>"
        )
    p.append("</table>")

    # 3. the seed's published numbers
    p.append("<h2>The seed notebook's published results beside ours</h2>")
    if is_seed_setting(m):
        p.append(
            '<table><tr><th class="l">rule</th><th>threshold seed / ours</th><th>accuracy seed / ours</th>'
            "<th>precision seed / ours</th><th>recall seed / ours</th><th>confusion matrix seed / ours</th></tr>"
        )
        for rule, s in SEED_PUBLISHED.items():
            ours = m["thresholds"].get(rule)
            if ours is None:
                continue
            tt = ours["test"]
            p.append(
                f'<tr><td class="l">{_e(ours.get("seed_name") or "")} {_e(rule)}</td>'
                f"<td>{_num(s.get('value'), 5)} / {_num(ours['value'], 5)}</td>"
                f"<td>{_num(s.get('accuracy'))} / {_num(tt['accuracy'])}</td>"
                f"<td>{_num(s.get('precision'))} / {_num(tt['precision'])}</td>"
                f"<td>{_num(s.get('recall'))} / {_num(tt['recall'])}</td>"
                f"<td>{_cm(s.get('confusion_matrix'))} / {_cm(tt['confusion_matrix'])}</td></tr>"
            )
        p.append(
            '</table><p class="muted">Seed: one Colab GPU run of the notebook (Keras, scores from a '
            "sampled coding). Differences of about a point are run-to-run noise.</p>"
        )
    else:
        p.append(
            "<p>Not comparable: this run does not use the seed's data and classes "
            "(Fashion-MNIST, normal T-shirt/top, Pullover, Shirt; abnormal Sneaker).</p>"
        )

    # 4. AUROC and AP
    p.append("<h2>AUROC and average precision</h2>")
    p.append('<table><tr><th class="l">subset</th><th>AUROC</th><th>average precision</th></tr>')
    for subset, r in ranking.items():
        p.append(
            f'<tr><td class="l">{_e(subset)}</td><td>{_num(r["auroc"])}</td><td>{_num(r["average_precision"])}</td></tr>'
        )
    p.append(
        f'</table><p class="muted">{_e(m.get("conventions", {}).get("auroc_ap", ""))}; threshold-free: '
        "the probability that a random anomaly scores above a random normal image (AUROC).</p>"
    )

    # 5. figures
    p.append("<h2>Figures</h2>")
    missing = [f for f in figures if f.png is None]
    if missing:
        p.append('<p class="missing">Missing figures:</p><ul class="missing">')
        p += [f"<li>{_e(f.name)}: {_e(f.error)}</li>" for f in missing]
        p.append("</ul>")
    for f in figures:
        if f.png is None:
            continue
        uri = "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")
        p.append(
            f'<figure id="{_e(f.name[:-4])}"><h3>{_e(f.title)}</h3>'
            f'<img src="{uri}" alt="{_e(f.title)}"><figcaption>{_e(f.caption)} '
            f'<span class="muted">({FIGURES_DIR}/{_e(f.name)})</span></figcaption></figure>'
        )
    p.append("</body></html>\n")
    return "\n".join(p)
