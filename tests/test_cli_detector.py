"""train -> score -> evaluate through Typer's CliRunner on tiny PNG folders, arrays and IDX files;
every bad input is one line and exit code 2."""

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_class_images
from vae_anomaly import VAEAnomalyDetector
from vae_anomaly.cli import app
from vae_anomaly.datasets import write_idx

SIZE = 12
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *patterns):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for pattern in patterns:
        assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output


def write_pngs(folder, images, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}{i:02d}.png")
    return folder


def read_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector_cli")
    rng = np.random.default_rng(0)
    write_pngs(root / "data" / "good", make_class_images(50, 0, size=SIZE, rng=rng))
    write_pngs(root / "data" / "defect", make_class_images(20, 7, size=SIZE, rng=rng))
    new = np.concatenate(
        [make_class_images(6, 0, size=SIZE, rng=rng), make_class_images(4, 7, size=SIZE, rng=rng)]
    )
    write_pngs(root / "new", new)
    return root, new


@pytest.fixture(scope="module")
def models(workdir):
    root, _ = workdir
    normal_only = invoke(
        "train", root / "data" / "good", "--out", root / "m1", "--epochs", 2, "--no-progress"
    )
    assert normal_only.exit_code == 0, normal_only.output
    labelled = invoke(
        "train", root / "data", "--abnormal", "defect", "--out", root / "m2.safetensors",
        "--epochs", 2, "--seed", 3, "--no-progress",
    )  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    return root / "m1", root / "m2.safetensors", normal_only.output, labelled.output


def test_train_saves_a_model_with_its_data_description(models):
    m1, m2, out1, out2 = models
    assert "threshold" in out1 and "train_mean_2.5std" in out1 and str(m1) in out1
    assert "best_valid_accuracy" in out2
    det = VAEAnomalyDetector.load(m2)
    assert det.threshold_rule_ == "best_valid_accuracy" and det.seed == 3
    info = det.data_info_
    assert info["class_names"] == ["defect", "good"]
    assert info["normal_names"] == ["good"] and info["abnormal_names"] == ["defect"]
    assert info["preprocessing"] == {
        "original_image_shape": [1, SIZE, SIZE], "resize": None, "grayscale": False,
    }  # fmt: skip
    # 50 good images: 40 in the training part; 36 of them train, the rest validate
    assert info["split"]["normal_train"] + info["split"]["valid_normal"] == 40
    assert set(det.thresholds_) >= {"train_mean_2.5std", "best_valid_accuracy", "valid_midpoint"}
    assert VAEAnomalyDetector.load(m1).data_info_["abnormal"] == []


def test_train_on_train_test_layout_takes_the_train_classes_as_normal(tmp_path):
    rng = np.random.default_rng(1)
    write_pngs(tmp_path / "d" / "train" / "normal", make_class_images(30, 0, size=SIZE, rng=rng))
    write_pngs(tmp_path / "d" / "test" / "normal", make_class_images(8, 0, size=SIZE, rng=rng))
    write_pngs(tmp_path / "d" / "test" / "abnormal", make_class_images(8, 7, size=SIZE, rng=rng))
    result = invoke(
        "train", tmp_path / "d", "--out", tmp_path / "m", "--epochs", 1, "--no-progress"
    )
    assert result.exit_code == 0, result.output
    info = VAEAnomalyDetector.load(tmp_path / "m").data_info_
    assert info["class_names"] == ["abnormal", "normal"]
    assert info["normal_names"] == ["normal"] and info["abnormal_names"] == []
    result = invoke(
        "evaluate", tmp_path / "m", tmp_path / "d", "--abnormal", "abnormal", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output


def test_train_refuses_to_overwrite_and_bad_options(models, workdir):
    root, _ = workdir
    m1 = models[0]
    before = (m1 / "detector.json").read_text()
    result = invoke("train", root / "data" / "good", "--out", m1, "--epochs", 1)
    one_line_error(result, "already holds a model", "--force")
    assert (m1 / "detector.json").read_text() == before
    result = invoke(
        "train", root / "data" / "good", "--out", root / "x", "--threshold-rule", "valid_midpoint"
    )
    one_line_error(result, "needs abnormal images", "--abnormal")
    one_line_error(
        invoke("train", root / "data", "--out", root / "x", "--resize", "12by12"), "HEIGHTxWIDTH"
    )
    one_line_error(invoke("train", root / "nowhere", "--out", root / "x"), "nowhere")
    assert not (root / "x").exists()


def test_unwritable_outputs_fail_before_any_work(models, workdir, tmp_path):
    root, _ = workdir
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "sub" / "m.safetensors"
    result = invoke("train", root / "data" / "good", "--out", out, "--epochs", 50, "--no-progress")
    one_line_error(result, rf"--out {out}: {blocker} is not a folder")
    assert "trained" not in result.output
    for option in ("--out", "--error-maps"):
        target = blocker / ("s.csv" if option == "--out" else "maps")
        result = invoke("score", models[0], root / "new", option, target, "--no-progress")
        one_line_error(result, f"{blocker} is not a folder")


def test_score_folder_in_batches_matches_in_process_scores(models, workdir, tmp_path):
    root, new = workdir
    det = VAEAnomalyDetector.load(models[0])
    expected = det.score_samples(new)
    out = tmp_path / "scores.csv"
    result = invoke(
        "score", models[0], root / "new", "--batch-size", 4, "--out", out, "--no-progress"
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(out.read_text())
    assert [r["source"] for r in rows] == [str(root / "new" / f"img{i:02d}.png") for i in range(10)]
    assert list(rows[0]) == ["source", "index", "score", "threshold", "is_anomaly"]
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-6)
    flagged = [int(r["is_anomaly"]) for r in rows]
    assert flagged == (expected >= det.threshold_).astype(int).tolist()
    assert f"scored 10 images, {sum(flagged)} flagged" in result.output
    # again without --force: refused; as JSON lines with --force
    one_line_error(invoke("score", models[0], root / "new", "--out", out), "already exists")
    jsonl = tmp_path / "scores.jsonl"
    result = invoke("score", models[0], root / "new", "--out", jsonl, "--no-progress")
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    np.testing.assert_allclose([r["score"] for r in lines], expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["png", "npy", "npy_float", "npz", "idx", "idx_gz"])
def test_each_input_format_scores_like_the_api(models, workdir, tmp_path, kind):
    _, new = workdir
    if kind == "png":
        path = tmp_path / "one.png"
        Image.fromarray(new[0]).save(path)
        images = new[:1]
    elif kind.startswith("npy"):
        images = new / np.float32(255) if kind == "npy_float" else new
        path = tmp_path / "x.npy"
        np.save(path, images)
    elif kind == "npz":
        images, path = new, tmp_path / "x.npz"
        np.savez(path, x=new)
    else:
        images, path = new, tmp_path / ("x-idx3-ubyte.gz" if kind == "idx_gz" else "x.idx")
        write_idx(path, new)
    result = invoke("score", models[0], path, "--no-progress", "--batch-size", 3)
    assert result.exit_code == 0, result.output
    rows = read_rows(result.stdout)
    assert [int(r["index"]) for r in rows] == list(range(len(images)))
    expected = VAEAnomalyDetector.load(models[0]).score_samples(images)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)


def _bad_inputs(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((2, SIZE, SIZE), np.nan, np.float32))
    rank = tmp_path / "rank.npy"
    np.save(rank, np.zeros((2, 3, SIZE, SIZE, 1), np.uint8))
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((2, 20, 20), np.uint8))
    colour = tmp_path / "colour.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(colour)
    return {
        "corrupt": (corrupt, "corrupt.png.*not a readable PNG/JPEG/BMP"),
        "text": (text, r"notes.txt is not an image \(.png"),
        "empty": (empty, "empty holds no image files"),
        "nan": (nan, "nan.npy.*NaN or infinite"),
        "rank": (rank, r"rank.npy holds an array of shape \(2, 3, 12, 12, 1\); expected"),
        "size": (big, "big.npy is 20x20 but the model expects 12x12; pass --resize"),
        "colour": (colour, "colour.png has colour.*pass --grayscale"),
        "missing": (tmp_path / "gone.png", "gone.png does not exist"),
    }


@pytest.mark.parametrize(
    "case", ["corrupt", "text", "empty", "nan", "rank", "size", "colour", "missing"]
)
def test_bad_inputs_are_one_line_errors(models, tmp_path, case):
    path, message = _bad_inputs(tmp_path)[case]
    one_line_error(invoke("score", models[0], path, "--no-progress"), message)


def test_resize_and_grayscale_make_images_fit(models, tmp_path):
    cases = _bad_inputs(tmp_path)
    result = invoke(
        "score",
        models[0],
        cases["size"][0],
        cases["colour"][0],
        "--resize",
        "--grayscale",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert len(read_rows(result.stdout)) == 3


def test_skip_bad_goes_on_and_lists_what_it_skipped(models, workdir, tmp_path):
    root, new = workdir
    cases = _bad_inputs(tmp_path / "bad")
    folder = write_pngs(tmp_path / "mixed", new[:3])
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    inputs = [folder, cases["nan"][0], cases["rank"][0], cases["empty"][0], cases["size"][0]]
    result = invoke("score", models[0], *inputs, "--skip-bad", "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(read_rows(result.stdout)) == 3
    assert "scored 3 images" in result.stderr and "skipped 5 file(s)" in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 5
    assert any("broken.jpg" in line and "not a readable" in line for line in skipped)
    assert any("nan.npy" in line and "NaN" in line for line in skipped)
    # nothing left to score: an error, not an empty success
    one_line_error(
        invoke("score", models[0], cases["nan"][0], "--skip-bad", "--no-progress"),
        "no image could be scored",
    )


def test_error_maps_one_png_per_image(models, workdir, tmp_path):
    root, new = workdir
    npz = tmp_path / "x.npz"
    np.savez(npz, x=new[:2])
    maps = tmp_path / "maps"
    result = invoke("score", models[0], root / "new", npz, "--error-maps", maps, "--no-progress")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in maps.iterdir())
    assert len(names) == 12 and any(n.endswith("x.npz-1.png") for n in names)
    with Image.open(maps / names[0]) as image:
        assert image.size == (2 * SIZE * 4, SIZE * 4) and image.mode == "RGB"
    one_line_error(invoke("score", models[0], npz, "--error-maps", maps), "already exists")


def test_error_maps_of_sources_with_the_same_flat_name_both_kept(
    models, workdir, tmp_path, monkeypatch
):
    _, new = workdir
    monkeypatch.chdir(tmp_path)  # relative inputs, as a user in that folder would type them
    write_pngs(tmp_path / "a", new[:1], prefix="b")  # a/b00.png
    Image.fromarray(new[1]).save(tmp_path / "a__b00.png")  # flattens to the same name
    maps = tmp_path / "maps"
    result = invoke(
        "score", models[0], "a", "a__b00.png", "--error-maps", maps, "--no-progress"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in maps.iterdir()) == ["a__b00-2.png", "a__b00.png"]


def test_altered_or_foreign_model_is_refused(models, tmp_path):
    import shutil

    altered = tmp_path / "m"
    shutil.copytree(models[0], altered)
    meta = json.loads((altered / "detector.json").read_text())
    meta["threshold"]["value"] = 0.0
    (altered / "detector.json").write_text(json.dumps(meta))
    one_line_error(invoke("score", altered, tmp_path), "altered after saving")
    meta["format_version"] = 99
    (altered / "detector.json").write_text(json.dumps(meta))
    one_line_error(invoke("score", altered, tmp_path), "format version 99")
    one_line_error(invoke("score", tmp_path / "nope", tmp_path), "nope does not exist")


def test_evaluate_prints_the_run_report_at_the_model_thresholds(models, workdir, tmp_path):
    root, _ = workdir
    out = tmp_path / "eval"
    result = invoke("evaluate", models[1], root / "data", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    for text in ("threshold5", "best_valid_accuracy *", "AUROC", "confusion matrix"):
        assert text in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    det = VAEAnomalyDetector.load(models[1])
    assert metrics["thresholds"]["best_valid_accuracy"]["value"] == pytest.approx(det.threshold_)
    assert metrics["dataset"]["split"]["test"] == 14  # 20% of 50 good + 20 defect images
    rows = read_rows((out / "scores.csv").read_text())
    assert len(rows) == 14 and sum(int(r["is_anomaly"]) for r in rows) == 4
    # a normal-only model needs to be told the abnormal classes
    one_line_error(invoke("evaluate", models[0], root / "data"), "pass --abnormal")
    result = invoke(
        "evaluate", models[0], root / "data", "--normal", "good", "--abnormal", "defect"
    )
    assert result.exit_code == 0, result.output
    assert "train_mean_2.5std *" in result.output


def test_help_and_usage_errors(models):
    for command in ("train", "score", "evaluate"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output
    result = invoke("score", models[0])
    assert result.exit_code == 2 and "Missing argument" in result.output
    result = invoke()  # `vae-anomaly` alone: the help, as an answer rather than an error
    assert result.exit_code == 0 and result.output.startswith("Usage: ")
    assert "error" not in result.output and "train" in result.output
