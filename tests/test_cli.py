"""The CLI through Typer's CliRunner: a one-epoch seed run on synthetic data, and one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from vae_anomaly.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_one_epoch_run_writes_a_readable_run_folder(one_epoch_run):
    result, out = one_epoch_run
    assert result.exit_code == 0, result.output
    for name in (
        "config.toml",
        "history.csv",
        "metrics.json",
        "scores.csv",
        "scores_valid.csv",
        "scores_train.csv",
        "report.txt",
        "model/model.safetensors",
        "model/detector.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_threshold"] == "best_valid_accuracy"
    assert list(metrics["thresholds"])[:5] == [
        "train_mean_2.5std", "abnormal_valid_mean_minus_std", "normal_valid_mean_plus_std", "valid_midpoint", "best_valid_accuracy",
    ]  # fmt: skip
    assert metrics["dataset"]["normal_names"] == ["T-shirt/top", "Pullover", "Shirt"]
    assert metrics["dataset"]["split"]["test"] == 80  # 20 test images of each of classes 0, 2, 6, 7
    assert metrics["training"]["epochs"] == 1
    stats = metrics["score_statistics"]
    assert list(stats) == [
        "normal_train", "valid", "normal_valid", "abnormal_valid", "test", "normal_test", "abnormal_test",
    ]  # fmt: skip
    assert stats["test"]["count"] == 80 and stats["normal_test"]["count"] == 60
    assert {"load_data_s", "train_s", "score_s", "total_s"} <= set(metrics["timings"])
    lines = (out / "scores.csv").read_text().splitlines()
    assert lines[0] == "subset,index,class,class_name,is_anomaly,score,predicted_anomaly"
    assert len(lines) == 81
    # the printed report: every rule, the seed names, AUROC
    for text in ("threshold1", "threshold5", "best_valid_accuracy *", "AUROC", "confusion matrix"):
        assert text in result.output
    assert "Traceback" not in result.output


def test_existing_run_folder_is_not_overwritten(one_epoch_run, synthetic_fashion_dir):
    _, out = one_epoch_run
    before = (out / "metrics.json").read_text()
    result = invoke(
        "run", "--data-dir", synthetic_fashion_dir, "--epochs", 1, "--out", out, "--no-progress"
    )
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output
    assert (out / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--normal", "unicorn"], "unknown"),
        (["--normal", "7", "--abnormal", "sneaker"], "must not share classes"),
        (["--epochs", "-1"], r"epochs \(--epochs\) must be an integer > 0. Got -1"),
        (["--batch-size", "0"], r"batch_size \(--batch-size\) must be an integer > 0. Got 0"),
        (["--kl-weight", "-1"], r"kl_weight \(--kl-weight\) must be >= 0"),
        (["--epochs", "abc"], "Invalid value for '--epochs'.*integer"),
        (["--threshold-rule", "nope"], "must be one of"),
        (
            ["--precision", "fp16"],
            r"precision \(--precision\) must be one of fp32, bf16. Got 'fp16'",
        ),
        (["--precision", "bf16", "--compile"], r"--compile\) works with train.precision fp32 only"),
        (["--preset", "nope"], "unknown preset"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_arguments_are_one_line_errors(synthetic_fashion_dir, tmp_path, args, message):
    result = invoke(
        "run", "--data-dir", synthetic_fashion_dir, "--out", tmp_path / "r", "--epochs", 1, *args
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (tmp_path / "r").exists()


def test_missing_dataset_and_bad_config(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("run", "--data-dir", empty, "--out", tmp_path / "r")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert str(empty) in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepoch = 3\n")
    result = invoke("run", "--config", bad, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: {bad}: unknown key 'train.epoch'. Known keys in [train]: batch_size, compile, device, epochs, epsilon, kl_weight, learning_rate, precision, rho, threads."
    )


def test_corrupt_idx_file(tmp_path, synthetic_fashion_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(synthetic_fashion_dir, bad)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    result = invoke("run", "--data-dir", bad, "--out", tmp_path / "r", "--epochs", 1)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "train-labels-idx1-ubyte.gz" in result.output


def test_version_and_help():
    assert invoke("--version").output.startswith("vae-anomaly ")
    result = invoke("run", "--help")
    assert result.exit_code == 0 and "--normal" in result.output and "--kl-weight" in result.output


def test_evaluate_splits_a_run_model_as_the_run_did(synthetic_fashion_dir, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[data]\nvalid_fraction = 0.25\n")
    out = tmp_path / "run"
    result = invoke(
        "run", "--config", config, "--data-dir", synthetic_fashion_dir, "--epochs", 1,
        "--out", out, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "model" / "detector.json").read_text())
    assert saved["data"]["valid_fraction"] == 0.25
    assert saved["data"]["normal_names"] == ["T-shirt/top", "Pullover", "Shirt"]
    result = invoke(
        "evaluate", out / "model", "fashion-mnist", "--data-dir", synthetic_fashion_dir,
        "--out", tmp_path / "eval", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_metrics = json.loads((out / "metrics.json").read_text())
    eval_metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert eval_metrics["dataset"]["split"] == run_metrics["dataset"]["split"]
    assert run_metrics["dataset"]["split"]["valid"] > 0.2 * 4 * 60  # a quarter of 4 classes x 60
    run_test = run_metrics["thresholds"]["best_valid_accuracy"]["test"]
    assert eval_metrics["thresholds"]["best_valid_accuracy"]["test"] == run_test


def test_unwritable_run_folder_fails_before_training(synthetic_fashion_dir, tmp_path):
    (tmp_path / "a_file").write_text("")
    result = invoke(
        "run", "--data-dir", synthetic_fashion_dir, "--out", tmp_path / "a_file" / "run",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 2 and "a_file is not a folder" in result.output
    assert "Total params" not in result.output  # failed before the model summary and training
