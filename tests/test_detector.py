"""The detector's API contract on tiny synthetic images (fit once per module)."""

import json

import numpy as np
import pytest

from conftest import make_class_images
from vae_anomaly import ModelFileError, NotFittedError, VAEAnomalyDetector
from vae_anomaly.errors import InputError
from vae_anomaly.thresholds import train_mean_std

SIZE = 12


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    normal = np.concatenate([make_class_images(100, c, size=SIZE, rng=rng) for c in (0, 2)])
    valid_normal = np.concatenate([make_class_images(30, c, size=SIZE, rng=rng) for c in (0, 2)])
    anomalies = make_class_images(30, 7, size=SIZE, rng=rng)
    return normal, valid_normal, anomalies


@pytest.fixture(scope="module")
def fitted(data):
    normal, valid_normal, _ = data
    det = VAEAnomalyDetector(hidden=(32, 16), latent_dim=4, epochs=40, batch_size=32, seed=0)
    return det.fit(normal, validation_data=valid_normal)


def test_contract_shapes_dtypes_and_labels(fitted, data):
    normal, valid_normal, anomalies = data
    x = np.concatenate([valid_normal, anomalies])
    scores = fitted.score_samples(x)
    assert scores.shape == (len(x),) and scores.dtype == np.float32
    labels = fitted.predict(x)
    assert labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores >= fitted.threshold_).astype(int))
    assert fitted.error_maps(x[:3]).shape == (3, SIZE, SIZE)
    assert fitted.reconstruct(x[:3]).shape == (3, 1, SIZE, SIZE)
    assert fitted.encode(x[:3]).shape == (3, 4)
    assert fitted.image_shape_ == (1, SIZE, SIZE)
    assert len(fitted.history_.train_loss) == 40 and 1 <= fitted.history_.best_epoch <= 40


def test_learns_to_separate_the_bright_square(fitted, data):
    _, valid_normal, anomalies = data
    normal_scores, anomaly_scores = (
        fitted.score_samples(valid_normal),
        fitted.score_samples(anomalies),
    )
    assert anomaly_scores.min() > np.median(normal_scores)
    assert fitted.predict(anomalies).mean() > 0.9


def test_fit_threshold_is_train_mean_plus_2_5_std(fitted, data):
    assert fitted.threshold_rule_ == "train_mean_2.5std"
    assert fitted.threshold_ == pytest.approx(train_mean_std(fitted.normal_train_scores_))
    np.testing.assert_allclose(fitted.normal_train_scores_, fitted.score_samples(data[0]))


def test_scores_are_deterministic_and_accept_float_and_channel_last(fitted, data):
    x = data[2][:5]
    a = fitted.score_samples(x)
    np.testing.assert_array_equal(a, fitted.score_samples(x))
    np.testing.assert_allclose(a, fitted.score_samples(x.astype(np.float32) / 255), rtol=1e-6)
    np.testing.assert_allclose(a, fitted.score_samples(x[..., None]), rtol=1e-6)


def test_same_seed_same_model(data):
    normal, _, _ = data
    kwargs = dict(hidden=(16,), latent_dim=2, epochs=2, batch_size=64, seed=5)
    a = VAEAnomalyDetector(**kwargs).fit(normal[:64]).score_samples(normal[:8])
    b = VAEAnomalyDetector(**kwargs).fit(normal[:64]).score_samples(normal[:8])
    c = VAEAnomalyDetector(**{**kwargs, "seed": 6}).fit(normal[:64]).score_samples(normal[:8])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_calibrate_with_any_rule(fitted, data):
    _, valid_normal, anomalies = data
    x = np.concatenate([valid_normal, anomalies])
    y = np.r_[np.zeros(len(valid_normal)), np.ones(len(anomalies))]
    det = fitted.calibrate(x, y, rule="best_valid_accuracy_exact")
    assert det.threshold_rule_ == "best_valid_accuracy_exact"
    assert np.mean(det.predict(x) == y) >= 0.95
    assert set(det.thresholds_) >= {"train_mean_2.5std", "best_valid_accuracy", "valid_midpoint"}
    with pytest.raises(InputError, match="rule must be one of .* Got 'nope'"):
        det.calibrate(x, y, rule="nope")
    with pytest.raises(InputError, match=r"is_anomaly must have shape \(90,\)"):
        det.calibrate(x, y[:3])
    det.calibrate(x, y, rule="train_mean_2.5std")  # leave the module fixture as it was


def test_normal_quantile_targets_a_false_positive_rate(data):
    normal, valid_normal, _ = data
    det = VAEAnomalyDetector(
        hidden=(16,), latent_dim=2, epochs=2, threshold_rule="normal_quantile", target_fpr=0.1
    )
    det.fit(normal, validation_data=valid_normal)
    assert np.mean(det.score_samples(valid_normal) >= det.threshold_) == pytest.approx(
        0.1, abs=0.02
    )


def test_not_fitted_error():
    with pytest.raises(NotFittedError, match="not fitted yet. Call 'fit'"):
        VAEAnomalyDetector().score_samples(np.zeros((1, 4, 4), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, r"epochs \(--epochs\) must be an integer > 0. Got 0"),
        ({"kl_weight": -1.0}, r"kl_weight \(--kl-weight\) must be >= 0"),
        (
            {"threshold_rule": "best_valid_accuracy"},
            "threshold_rule must be one of train_mean_2.5std, normal_quantile for fit",
        ),
    ],
)
def test_bad_parameters(kwargs, message, data):
    with pytest.raises(InputError, match=message):
        VAEAnomalyDetector(**kwargs).fit(data[0][:4])


def test_wrong_image_size_is_refused(fitted):
    with pytest.raises(
        InputError, match=r"shape \(10, 10, 1\) but the detector was fitted on \(12, 12, 1\)"
    ):
        fitted.score_samples(np.zeros((2, 10, 10), np.uint8))


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_save_load_gives_identical_scores(fitted, data, tmp_path, kind):
    path = tmp_path / ("model" if kind == "dir" else "model.safetensors")
    fitted.save(path)
    loaded = VAEAnomalyDetector.load(path)
    x = data[2]
    np.testing.assert_array_equal(loaded.score_samples(x), fitted.score_samples(x))
    assert (
        loaded.threshold_ == fitted.threshold_ and loaded.threshold_rule_ == fitted.threshold_rule_
    )
    assert loaded.image_shape_ == fitted.image_shape_
    assert loaded.history_.train_loss == fitted.history_.train_loss


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_precision_is_saved_only_when_older_versions_could_not_read_it(fitted, tmp_path, kind):
    """An fp32 model's metadata leave out ``precision`` (the package before it reads them); a bf16
    model's keep it; a file without it loads as fp32."""
    import copy

    name = "model" if kind == "dir" else "model.safetensors"
    fitted.save(tmp_path / "fp32" / name)
    loaded = VAEAnomalyDetector.load(tmp_path / "fp32" / name)
    assert "precision" not in loaded.saved_metadata_["params"]  # the file as written
    assert loaded.precision == "fp32"
    bf16 = copy.deepcopy(fitted)
    bf16.precision = "bf16"
    bf16.save(tmp_path / "bf16" / name)
    loaded = VAEAnomalyDetector.load(tmp_path / "bf16" / name)
    assert loaded.saved_metadata_["params"]["precision"] == "bf16"
    assert loaded.precision == "bf16"


def test_loaded_detector_calibrates_like_the_fitted_one(fitted, data, tmp_path):
    _, valid_normal, anomalies = data
    x = np.concatenate([valid_normal, anomalies])
    y = np.r_[np.zeros(len(valid_normal)), np.ones(len(anomalies))]
    loaded = VAEAnomalyDetector.load(fitted.save(tmp_path / "m"))
    loaded.calibrate(x, y, rule="valid_midpoint")
    fitted.calibrate(x, y, rule="valid_midpoint")
    try:
        assert loaded.threshold_ == fitted.threshold_
        assert {k: t.value for k, t in loaded.thresholds_.items()} == {
            k: t.value for k, t in fitted.thresholds_.items()
        }
    finally:
        fitted.calibrate(x, y, rule="train_mean_2.5std")  # leave the module fixture as it was


def test_altered_metadata_or_weights_are_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    meta_path = path / "detector.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["threshold"]["value"] = 0.0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="metadata were altered"):
        VAEAnomalyDetector.load(path)
    meta_path.write_text(original)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="weights were altered"):
        VAEAnomalyDetector.load(path)


def test_truncated_or_foreign_files_are_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="m.safetensors is not a readable safetensors file"):
        VAEAnomalyDetector.load(path)
    other = fitted.save(tmp_path / "v")
    meta = json.loads((other / "detector.json").read_text())
    meta["format_version"] = 99
    (other / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(
        ModelFileError, match="has model format version 99; this vae-anomaly .* reads version 1"
    ):
        VAEAnomalyDetector.load(other)
    with pytest.raises(ModelFileError, match="does not exist"):
        VAEAnomalyDetector.load(tmp_path / "missing")


def test_fit_on_very_few_images_warns(data):
    normal = data[0][:5]
    det = VAEAnomalyDetector(hidden=(8,), latent_dim=2, epochs=1, batch_size=4)
    with pytest.warns(UserWarning, match="fit got only 5 normal image"):
        det.fit(normal)
    assert det.threshold_ > 0
