import pytest

from vae_anomaly.config import (
    RunConfig,
    apply_preset,
    config_from_dict,
    config_to_toml,
    load_config,
)
from vae_anomaly.errors import InputError


def test_toml_round_trip(tmp_path):
    config = config_from_dict(
        {
            "seed": 3,
            "name": "x",
            "data": {"normal": ["sneaker"], "data_dir": "/d"},
            "train": {"epochs": 5, "kl_weight": 1 / 784},
        }
    )
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config
    assert load_config(path).train.kl_weight == 1 / 784  # repr keeps every digit


def test_defaults_are_the_seed():
    c = RunConfig()
    assert (c.train.epochs, c.train.batch_size, c.train.kl_weight, c.model.latent_dim) == (
        100,
        128,
        0.0,
        16,
    )
    assert (c.train.learning_rate, c.train.rho, c.train.epsilon) == (1e-3, 0.9, 1e-7)
    assert c.data.normal == ["0", "2", "6"] and c.data.abnormal == ["7"]
    assert c.threshold.rule == "best_valid_accuracy"


def test_geron_preset():
    assert apply_preset(RunConfig(), "geron").train.kl_weight == pytest.approx(1 / 784)
    with pytest.raises(InputError, match="unknown preset 'nope'. Known presets: seed, geron"):
        apply_preset(RunConfig(), "nope")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("epochs = 3", r"unknown key 'epochs'. .* Did you mean 'epochs' in \[train\]\?"),
        ("[train]\nepochs = 'three'", r"bad.toml: train.epochs \(--epochs\) must be an integer"),
        ("[train]\nepoch = 3", r"unknown key 'train.epoch'. Known keys in \[train\]: .*epochs"),
        ("[train]\nepochs = -1", r"train.epochs \(--epochs\) must be an integer > 0. Got -1"),
        (
            "[train]\nbatch_size = 0",
            r"train.batch_size \(--batch-size\) must be an integer > 0. Got 0",
        ),
        ("[train]\nkl_weight = -0.5", r"kl_weight \(--kl-weight\) must be >= 0. Got -0.5"),
        ("[train]\nepochs = 2.5", "must be an integer > 0. Got 2.5"),
        (
            "[train]\ncompile = 'yes'",
            r"train.compile \(--compile\) must be true or false. Got 'yes'",
        ),
        (
            "[train]\nprecision = 'half'",
            r"train.precision \(--precision\) must be one of fp32, bf16. Got 'half'",
        ),
        (
            "[threshold]\nrule = 'median'",
            "threshold.rule .* must be one of train_mean_2.5std, .* Got 'median'",
        ),
        ("[data]\nvalid_fraction = 1.5", r"data.valid_fraction must be in \(0, 1\). Got 1.5"),
        ("[data]\nnormal = []", "data.normal must be a non-empty list"),
        ("[data]\nnormal = [1.5]", r"data.normal must be a non-empty list .* Got \[1.5\]"),
        ("[data]\ndata_dir = 5", r"data.data_dir \(--data-dir\) must be a folder path. Got 5"),
        ("[data]\ndownload = 'no'", r"data.download \(--download\) must be true or false"),
        ("name = 5", r"name \(--name\) must be a folder name \(no '/'\). Got 5"),
        ("name = '../up'", r"name \(--name\) must be a folder name \(no '/'\). Got '../up'"),
        ("train = 3", r"\[train\] must be a table"),
        ("this is not toml", "is not valid TOML"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file .*nope.toml does not exist"):
        load_config(tmp_path / "nope.toml")


def test_preset_key_in_file(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('preset = "geron"\n[train]\nepochs = 2\n')
    c = load_config(path)
    assert c.train.kl_weight == pytest.approx(1 / 784) and c.train.epochs == 2
