"""Shared fixtures: tiny synthetic images written once per session in the formats the loaders accept."""

from __future__ import annotations

import numpy as np
import pytest


def make_class_images(n: int, cls: int, *, size: int = 28, rng: np.random.Generator) -> np.ndarray:
    """``(n, size, size)`` uint8 images of class ``cls``: a soft blob whose place and shape depend on the
    class, plus noise. Class 7 (the default anomaly) is a bright square at the top-left corner."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((n, size, size), np.float64)
    for i in range(n):
        if cls == 7:
            img = np.zeros((size, size))
            s = size // 3
            img[1 : 1 + s, 1 : 1 + s] = 1.0
        else:
            cy, cx = 0.5 + 0.15 * np.cos(cls), 0.5 + 0.15 * np.sin(cls)
            sy, sx = 0.12 + 0.02 * (cls % 3), 0.12 + 0.02 * (cls % 4)
            img = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        img = img * rng.uniform(0.8, 1.0) + rng.normal(0, 0.03, (size, size))
        images[i] = img
    return (np.clip(images, 0, 1) * 255).astype(np.uint8)


def make_dataset(
    n_per_class: int, *, size: int = 28, n_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``n_classes`` classes, shuffled."""
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [make_class_images(n_per_class, c, size=size, rng=rng) for c in range(n_classes)]
    )
    y = np.repeat(np.arange(n_classes), n_per_class).astype(np.uint8)
    order = rng.permutation(len(y))
    return x[order], y[order]


@pytest.fixture(scope="session")
def synthetic_fashion_dir(tmp_path_factory: pytest.TempPathFactory):
    """A folder with the four Fashion-MNIST IDX .gz files, holding 60 train and 20 test images per class."""
    from vae_anomaly.datasets import write_idx

    root = tmp_path_factory.mktemp("fashion")
    x_train, y_train = make_dataset(60, seed=1)
    x_test, y_test = make_dataset(20, seed=2)
    write_idx(root / "train-images-idx3-ubyte.gz", x_train)
    write_idx(root / "train-labels-idx1-ubyte.gz", y_train)
    write_idx(root / "t10k-images-idx3-ubyte.gz", x_test)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", y_test)
    return root


@pytest.fixture(scope="session")
def one_epoch_run(synthetic_fashion_dir, tmp_path_factory):
    """``vae-anomaly run`` for one epoch on the synthetic Fashion-MNIST, once per session:
    ``(CliRunner result, run folder)``. Tests read the folder; one that changes it copies it first."""
    from typer.testing import CliRunner

    from vae_anomaly.cli import app

    out = tmp_path_factory.mktemp("runs") / "one"
    args = [
        "run",
        "--data-dir",
        synthetic_fashion_dir,
        "--epochs",
        1,
        "--out",
        out,
        "--no-progress",
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result, out
