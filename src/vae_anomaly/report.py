"""The run folder: config, history, metrics, scores, model, figures and report; and its text report.

A run folder is written into a temporary folder beside its destination and renamed into place at
the end, so a crashed or interrupted run never leaves a half-written folder, and an existing one is
never overwritten unless asked.
"""

from __future__ import annotations

import contextlib
import csv
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
from .errors import InputError
from .files import write_json_atomic, write_text_atomic

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


def write_run(result: Any, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write the run folder of an ``experiment.ExperimentResult`` to ``out_dir`` (atomically).

    Layout: ``config.toml``, ``history.csv``, ``metrics.json``, ``scores.csv`` (test images),
    ``scores_valid.csv``, ``scores_train.csv``, ``report.txt`` and ``model/`` (safetensors + JSON).
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
    return out_dir
