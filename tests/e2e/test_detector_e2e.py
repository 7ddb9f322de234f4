"""End to end on the real Fashion-MNIST: train and save through the CLI, write the 4000 test images
as PNG files, score them through the CLI, and get the in-process scores back."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vae_anomaly import VAEAnomalyDetector
from vae_anomaly.cli import app
from vae_anomaly.datasets import load_dataset, seed_split

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not found in {FASHION}"),
]
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_train_save_score_pngs_and_evaluate(tmp_path):
    model = tmp_path / "model.safetensors"
    invoke(
        "train", "fashion-mnist", "--data-dir", FASHION, "--no-download", "--normal", "0,2,6",
        "--abnormal", "7", "--epochs", 10, "--out", model, "--no-progress",
    )  # fmt: skip
    dataset = load_dataset("fashion-mnist", data_dir=FASHION, download=False)
    split = seed_split(dataset, (0, 2, 6), (7,), seed=0)
    assert len(split.test_x) == 4000
    folder = tmp_path / "test_png"
    folder.mkdir()
    for i, image in enumerate(split.test_x):
        Image.fromarray(image).save(folder / f"{i:04d}.png")

    out = tmp_path / "scores.csv"
    result = invoke("score", model, folder, "--out", out, "--no-progress")
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4000
    detector = VAEAnomalyDetector.load(model)
    expected = detector.score_samples(split.test_x)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5, atol=1e-7)
    flagged = sum(int(r["is_anomaly"]) for r in rows)
    assert f"scored 4000 images, {flagged} flagged" in result.output

    metrics_dir = tmp_path / "eval"
    result = invoke("evaluate", model, "fashion-mnist", "--data-dir", FASHION, "--out", metrics_dir)
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    assert metrics["ranking"]["test"]["auroc"] > 0.9  # the seed reaches about 0.96
    selected = metrics["thresholds"]["best_valid_accuracy"]["test"]
    assert selected["accuracy"] > 0.85 and flagged == sum(
        selected["confusion_matrix"][i][0] for i in (0, 1)
    )
