"""Tests of vae_anomaly.datasets: IDX files, finding and downloading datasets, custom datasets,
class selection and the seed's split. No test touches the network or the real Debian folder
(except the e2e test)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vae_anomaly.datasets import (
    FASHION_MNIST_CLASSES,
    IDX_FILE_NAMES,
    KNOWN_DATASETS,
    MNIST_CLASSES,
    DataFile,
    Dataset,
    check_classes,
    download_dataset,
    find_dataset_dir,
    load_dataset,
    load_known_dataset,
    parse_classes,
    read_idx,
    seed_split,
    write_idx,
)
from vae_anomaly.errors import DatasetNotFoundError, InputError

# --- helpers -----------------------------------------------------------------------------------


def write_idx_dataset(
    folder: Path, *, n_train: int = 30, n_test: int = 20, gz: bool = True, seed: int = 0
) -> list[np.ndarray]:
    """Write four synthetic IDX files (8x8 images, labels 0..9) into ``folder``."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 8, 8), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 8, 8), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    ]
    for name, array in zip(IDX_FILE_NAMES, arrays, strict=True):
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


def gunzip_sha256(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def patch_registry(monkeypatch, name: str, served: Path, **changes) -> None:
    """Point a registry entry's hashes at the synthetic files in ``served``."""
    spec = KNOWN_DATASETS[name]
    fields = ("train_images", "train_labels", "test_images", "test_labels")
    for field, datafile in zip(fields, spec.files, strict=True):
        changes[field] = DataFile(datafile.name, gunzip_sha256(served / datafile.name))
    monkeypatch.setitem(KNOWN_DATASETS, name, replace(spec, **changes))


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Every place find_dataset_dir searches, moved under tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("VAE_ANOMALY_DATA", raising=False)
    debian = tmp_path / "debian" / "fashion-mnist"
    spec = KNOWN_DATASETS["fashion-mnist"]
    monkeypatch.setitem(KNOWN_DATASETS, "fashion-mnist", replace(spec, debian_dir=debian))
    return SimpleNamespace(
        env=tmp_path / "env",
        debian=debian,
        cache=home / ".cache" / "vae-anomaly" / "fashion-mnist",
        keras=home / ".keras" / "datasets" / "fashion-mnist",
    )


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; records the paths requested."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_request(self, code="-", size="-"):
            requests.append(self.path)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(
        root=root, url=f"http://127.0.0.1:{httpd.server_port}/", requests=requests
    )
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_url():
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-128, -1, 0, 127], dtype=np.int8),
        np.array([[-32768, 1], [256, 32767]], dtype=np.int16),
        np.arange(-6, 6, dtype=np.int32).reshape(1, 2, 3, 2) * 100_000,
        np.array([0.5, -1.25, 3e38], dtype=np.float32),
        np.array([[1e-300, -2.5]], dtype=np.float64),
    ],
    ids=["uint8", "int8", "int16", "int32", "float32", "float64"],
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    if not suffix:
        mapped = read_idx(path, mmap=True)
        assert isinstance(mapped, np.memmap)
        np.testing.assert_array_equal(mapped, array)


def test_idx_header_bytes_and_gzip_detected_by_magic(tmp_path):
    write_idx(tmp_path / "a.idx", np.array([[1, 2, 3]], dtype=np.uint8))
    assert (tmp_path / "a.idx").read_bytes() == bytes.fromhex("00000802 00000001 00000003 010203")
    write_idx(tmp_path / "b.gz", np.array([7, 8], dtype=np.int16))
    (tmp_path / "b.gz").rename(tmp_path / "b-ubyte")  # gzip content without the suffix
    assert read_idx(tmp_path / "b-ubyte").tolist() == [7, 8]
    assert not list(tmp_path.glob(".*.tmp"))


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x00", r"it has 2 bytes, fewer than the 4-byte magic number"),
        (
            b"\x01\x02\x08\x01" + bytes(8),
            r"magic number must start with two zero bytes; found 01 02 08 01",
        ),
        (
            _header(0x07, (2,)) + bytes(2),
            r"IDX type code 0x07; expected one of 0x08 \(uint8\), 0x09 \(int8\)",
        ),
        (bytes([0, 0, 8, 5]) + bytes(20), r"5 dimensions in its IDX header; expected 1 to 4"),
        (bytes([0, 0, 8, 0]), r"0 dimensions in its IDX header"),
        (
            bytes([0, 0, 8, 3, 0, 0]),
            r"is truncated: expected a 16-byte IDX header for 3 dimensions, found 6",
        ),
        (
            _header(0x08, (60000, 28, 28)) + bytes(1000),
            r"is truncated: expected 47040000 bytes of data for 60000x28x28 uint8, found 1000\.$",
        ),
        (
            _header(0x0B, (3,)) + bytes(5),
            r"is truncated: expected 6 bytes of data for 3 int16, found 5",
        ),
        (
            _header(0x08, (2, 5)) + bytes(12),
            r"has 2 extra bytes: expected 10 bytes of data for 2x5 uint8, found 12",
        ),
    ],
)
def test_read_idx_errors(tmp_path, content, match):
    for name, data in (("bad-ubyte", content), ("bad-ubyte.gz", gzip.compress(content))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"bad-ubyte(\.gz)? .*{match}"):
            read_idx(tmp_path / name)


def test_read_idx_corrupt_gzip_and_missing(tmp_path):
    good = gzip.compress(_header(0x08, (100,)) + bytes(range(100)))
    for name, data in (("cut.gz", good[:-12]), ("flip.gz", good[:12] + b"\xff" * 20 + good[32:])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(
            InputError, match=rf"{name.replace('.', '[.]')} is not a valid gzip file"
        ):
            read_idx(tmp_path / name)
    with pytest.raises(InputError, match=r"IDX file .*none-ubyte does not exist"):
        read_idx(tmp_path / "none-ubyte")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(3, np.int64), r"IDX cannot hold dtype int64; use one of uint8, int8"),
        (np.zeros(3, bool), r"IDX cannot hold dtype bool"),
        (np.zeros((1, 1, 1, 1, 1), np.uint8), r"1 to 4 dimensions; got shape \(1, 1, 1, 1, 1\)"),
        (np.uint8(3), r"got shape \(\)"),
    ],
)
def test_write_idx_errors(tmp_path, array, match):
    with pytest.raises(InputError, match=match):
        write_idx(tmp_path / "x.idx", array)
    assert not list(tmp_path.iterdir())


# --- finding known datasets --------------------------------------------------------------------


def test_registry():
    fashion, mnist = KNOWN_DATASETS["fashion-mnist"], KNOWN_DATASETS["mnist"]
    assert fashion.class_names == FASHION_MNIST_CLASSES and len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[7] == "Sneaker" and MNIST_CLASSES[3] == "3"
    assert [f.name for f in fashion.files] == [n + ".gz" for n in IDX_FILE_NAMES]
    assert fashion.base_urls[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert all(len(f.sha256) == 64 for spec in (fashion, mnist) for f in spec.files)


ORDER = ["env", "env_subdir", "debian", "cache", "keras"]


@pytest.mark.parametrize("first", range(len(ORDER)))
def test_find_dataset_dir_search_order(places, monkeypatch, first):
    folders = {
        "env": places.env,
        "env_subdir": places.env / "fashion-mnist",
        "debian": places.debian,
        "cache": places.cache,
        "keras": places.keras,
    }
    monkeypatch.setenv("VAE_ANOMALY_DATA", str(places.env))
    for key in ORDER[first:]:
        write_idx_dataset(folders[key], n_train=2, n_test=2, gz=key != "debian")
    labels = ["VAE_ANOMALY_DATA", "VAE_ANOMALY_DATA", "debian", "cache", "keras"]
    assert find_dataset_dir("fashion-mnist") == (folders[ORDER[first]], labels[first])


def test_find_dataset_dir_data_dir_wins_or_fails_without_searching(places, tmp_path):
    write_idx_dataset(places.debian, n_train=2, n_test=2)
    mine = tmp_path / "mine"
    write_idx_dataset(mine, n_train=2, n_test=2)
    assert find_dataset_dir("Fashion_MNIST", mine) == (mine, "--data-dir")
    write_idx_dataset(tmp_path / "parent" / "fashion-mnist", n_train=2, n_test=2)
    assert find_dataset_dir("fashion-mnist", tmp_path / "parent")[1] == "--data-dir"
    partial = tmp_path / "partial"
    write_idx(partial / "train-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    write_idx(partial / "t10k-images-idx3-ubyte.gz", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(
        InputError,
        match=r"`--data-dir` .*partial lacks the Fashion-MNIST files train-labels-idx1-ubyte, "
        r"t10k-labels-idx1-ubyte \(each raw or \.gz\)",
    ):
        find_dataset_dir("fashion-mnist", partial)
    with pytest.raises(InputError, match=r"`--data-dir` .*nowhere does not exist"):
        find_dataset_dir("fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(
        InputError, match=r"Unknown dataset 'cifar10'; known datasets are fashion-mnist, mnist"
    ):
        find_dataset_dir("cifar10")


def test_find_dataset_dir_xdg_cache_and_nothing(places, tmp_path, monkeypatch):
    assert find_dataset_dir("fashion-mnist") is None
    write_idx_dataset(places.cache, n_train=2, n_test=2)  # ~/.cache, hidden once XDG is set
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert find_dataset_dir("fashion-mnist") is None
    xdg = tmp_path / "xdg" / "vae-anomaly" / "fashion-mnist"
    write_idx_dataset(xdg, n_train=2, n_test=2)
    assert find_dataset_dir("fashion-mnist") == (xdg, "cache")


# --- download ----------------------------------------------------------------------------------


def test_download_tries_urls_in_order_and_skips_present_files(
    places, server, closed_url, tmp_path, monkeypatch
):
    arrays = write_idx_dataset(server.root)
    patch_registry(monkeypatch, "fashion-mnist", server.root)
    dest = tmp_path / "dest"
    assert download_dataset("fashion-mnist", dest, base_urls=[closed_url, server.url]) == dest
    names = sorted(n + ".gz" for n in IDX_FILE_NAMES)
    assert sorted(p.name for p in dest.iterdir()) == names
    assert sorted(server.requests) == sorted("/" + n for n in names)
    download_dataset("fashion-mnist", dest, base_urls=[server.url])
    assert len(server.requests) == 4  # nothing fetched again
    dataset = load_known_dataset("fashion-mnist", dest)
    np.testing.assert_array_equal(dataset.x_train, arrays[0])
    assert dataset.y_test.dtype == np.int64 and dataset.class_names == FASHION_MNIST_CLASSES
    assert dataset.source == f"--data-dir: {dest}"


def test_load_known_dataset_downloads_to_the_user_cache(places, server, monkeypatch):
    write_idx_dataset(server.root, n_train=10, n_test=5)
    patch_registry(monkeypatch, "fashion-mnist", server.root, base_urls=(server.url,))
    dataset = load_known_dataset("fashion-mnist", progress=True)
    assert dataset.x_train.shape == (10, 8, 8) and dataset.x_test.shape == (5, 8, 8)
    assert dataset.source == f"download: {places.cache}"
    assert find_dataset_dir("fashion-mnist") == (places.cache, "cache")


def test_download_rejects_a_corrupted_file_and_keeps_nothing_of_it(server, tmp_path, monkeypatch):
    write_idx_dataset(server.root)
    patch_registry(monkeypatch, "fashion-mnist", server.root)
    good = KNOWN_DATASETS["fashion-mnist"].train_labels.sha256
    write_idx(server.root / "train-labels-idx1-ubyte.gz", np.ones(30, np.uint8))  # altered
    bad = gunzip_sha256(server.root / "train-labels-idx1-ubyte.gz")
    dest = tmp_path / "dest"
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"train-labels-idx1-ubyte\.gz from http://127\.0\.0\.1:\d+/train-labels-idx1-ubyte\.gz "
        rf"has SHA-256 {bad}, expected {good}; not kept",
    ):
        download_dataset("fashion-mnist", dest, base_urls=[server.url])
    assert [p.name for p in dest.iterdir()] == ["train-images-idx3-ubyte.gz"]
    (server.root / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>not gzip</html>")
    with pytest.raises(
        DatasetNotFoundError, match=r"train-labels-idx1-ubyte\.gz from .* is not valid gzip"
    ):
        download_dataset("fashion-mnist", dest, base_urls=[server.url])
    assert [p.name for p in dest.iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_download_without_network_says_how_to_get_the_data(
    places, closed_url, tmp_path, monkeypatch
):
    dest = tmp_path / "dest"
    with pytest.raises(DatasetNotFoundError) as caught:
        download_dataset("fashion-mnist", dest, base_urls=[closed_url], timeout=5)
    message = str(caught.value)
    assert message.startswith(
        f"Fashion-MNIST not found in {dest} and the download failed ({closed_url}"
    )
    assert message.endswith(
        "Install it with `apt-get install dataset-fashion-mnist`, "
        "or pass --data-dir DIR holding the four IDX files."
    )
    assert isinstance(caught.value, FileNotFoundError)
    assert not dest.exists() or not list(dest.iterdir())

    spec = KNOWN_DATASETS["fashion-mnist"]
    monkeypatch.setitem(KNOWN_DATASETS, "fashion-mnist", replace(spec, base_urls=(closed_url,)))
    with pytest.raises(DatasetNotFoundError) as caught:
        load_known_dataset("fashion-mnist")
    assert (
        f"not found in {places.debian}, {places.cache}, {places.keras} and the download failed"
        in str(caught.value)
    )
    with pytest.raises(
        DatasetNotFoundError, match=r"and downloading is off\. Install it with `apt-get"
    ):
        load_known_dataset("fashion-mnist", download=False)


def test_mnist_downloads_and_loads_the_same_way(places, server, closed_url, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_idx_dataset(server.root, n_train=12, n_test=6, seed=1)
    patch_registry(monkeypatch, "mnist", server.root, base_urls=(closed_url, server.url))
    dataset = load_dataset("MNIST")
    assert dataset.name == "mnist" and dataset.class_names == MNIST_CLASSES
    assert dataset.x_train.shape == (12, 8, 8)
    assert dataset.source == f"download: {tmp_path / 'xdg' / 'vae-anomaly' / 'mnist'}"
    with pytest.raises(DatasetNotFoundError) as caught:
        download_dataset("mnist", tmp_path / "other", base_urls=[closed_url])
    message = str(caught.value)
    assert message.startswith("MNIST not found in") and "apt-get" not in message
    assert message.endswith(
        "Pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)."
    )


# --- Dataset -----------------------------------------------------------------------------------


def _dataset(**changes) -> Dataset:
    fields = {
        "name": "toy",
        "x_train": np.zeros((4, 2, 2), np.uint8),
        "y_train": np.array([0, 1, 2, 1]),
        "x_test": np.zeros((2, 2, 2), np.uint8),
        "y_test": np.array([2, 0]),
        "class_names": ("a", "b", "c"),
        "source": "test",
    }
    return Dataset(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"y_train": np.array([0, 1, 3, 1])}, r"`y_train` must hold class ids 0 to 2 .*got 0 to 3"),
        ({"y_test": np.array([0, -1])}, r"`y_test` must hold class ids 0 to 2 .*got -1 to 0"),
        (
            {"y_train": np.array([0, 1, 2])},
            r"`y_train` must be \(N,\) with one label per image \(4\); got shape \(3,\)",
        ),
        ({"y_train": np.array([0.0, 1, 2, 1])}, r"integer class ids; got dtype float64"),
        (
            {"x_test": np.zeros((2, 3, 3), np.uint8)},
            r"test images are \(3, 3\) but training images are \(2, 2\)",
        ),
        (
            {"x_train": np.zeros((4, 2), np.uint8)},
            r"`x_train` must be \(N, H, W\) or \(N, H, W, C\)",
        ),
        ({"x_train": np.full((4, 2, 2), 2.0)}, r"floats in \[0, 1\]; got values up to 2"),
        ({"class_names": ("a", "b", "a")}, r"duplicate class names"),
        (
            {"x_train": np.zeros((0, 2, 2), np.uint8), "y_train": np.zeros(0, int)},
            r"no training images",
        ),
    ],
)
def test_dataset_validation(changes, match):
    with pytest.raises(InputError, match=match):
        _dataset(**changes)


def test_dataset_image_shape_and_label_dtype():
    dataset = _dataset(y_train=np.array([0, 1, 2, 1], np.uint8))
    assert dataset.y_train.dtype == np.int64 and dataset.image_shape == (1, 2, 2)
    colour = _dataset(
        x_train=np.zeros((4, 5, 6, 3), np.uint8), x_test=np.zeros((2, 5, 6, 3), np.uint8)
    )
    assert colour.image_shape == (3, 5, 6)


# --- classes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0,2,6", (0, 2, 6)),
        ("t-shirt/top,pullover,shirt", (0, 2, 6)),
        ("SNEAKER", (7,)),
        (" sneaker , 7 ,", (7,)),
        ("6,0,6,2", (6, 0, 2)),
        ([7, "bag"], (7, 8)),
        ([np.int64(3), "Ankle Boot"], (3, 9)),
        ("9", (9,)),
    ],
)
def test_parse_classes(spec, expected):
    assert parse_classes(spec, FASHION_MNIST_CLASSES) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", r"^`--abnormal` must name at least one class; got ''\.$"),
        (" , ", r"`--abnormal` must name at least one class"),
        ([], r"`--abnormal` must name at least one class; got \[\]"),
        (
            "t-shirt",
            r"`--abnormal` got unknown class 't-shirt'; valid classes are 0 \(T-shirt/top\), 1 \(Trouser\),",
        ),
        ("10", r"`--abnormal` got class index 10; valid indices are 0 to 9\.$"),
        ([-1], r"got class index -1; valid indices are 0 to 9"),
        ("-1", r"got unknown class '-1'"),
        ([True], r"got True; expected class names or indices"),
    ],
)
def test_parse_classes_errors(spec, match):
    with pytest.raises(InputError, match=match):
        parse_classes(spec, FASHION_MNIST_CLASSES, option="--abnormal")


def test_parse_classes_names_win_over_indices():
    names = ("1", "2", "3")  # folders named by number
    assert parse_classes("2", names) == (1,)
    assert parse_classes("0", names) == (0,)  # not a name: an index
    assert parse_classes([2], names) == (2,)  # ints are always indices
    with pytest.raises(InputError, match=r"valid classes are 0 \(1\), 1 \(2\), 2 \(3\)"):
        parse_classes("x", names)
    assert parse_classes("7", MNIST_CLASSES) == (7,)


@pytest.mark.parametrize(
    ("normal", "abnormal", "names", "match"),
    [
        (
            (0, 7),
            (7,),
            FASHION_MNIST_CLASSES,
            r"^`--normal` must not share classes with `--abnormal`\. Got 7 \(Sneaker\) in both\.$",
        ),
        (
            (0, 2, 7),
            (2, 7),
            MNIST_CLASSES,
            r"^`--normal` must not share classes with `--abnormal`\. Got 2, 7 in both\.$",
        ),
        ((), (7,), MNIST_CLASSES, r"^`--normal` must name at least one class; got none\.$"),
        ((1,), (), MNIST_CLASSES, r"^`--abnormal` must name at least one class"),
        ((1,), (10,), MNIST_CLASSES, r"^`--abnormal` got class index 10; valid indices are 0 to 9"),
    ],
)
def test_check_classes_errors(normal, abnormal, names, match):
    with pytest.raises(InputError, match=match):
        check_classes(normal, abnormal, class_names=names)


def test_check_classes_accepts_disjoint():
    assert check_classes((0, 2, 6), (7,), class_names=FASHION_MNIST_CLASSES) is None


# --- the seed's split --------------------------------------------------------------------------


@pytest.fixture
def toy600() -> Dataset:
    """600 training images, 100 each of classes 0..5 (no 6..9); 100 test images, 10 per class.

    Every image's pixels equal its index (mod 251), so a test can tell which image it is.
    """
    x_train = (np.arange(600) % 251).astype(np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    x_test = (np.arange(100) % 251).astype(np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    return Dataset(
        "toy",
        x_train,
        np.arange(600) % 6,
        x_test,
        np.arange(100) % 10,
        FASHION_MNIST_CLASSES,
        "toy",
    )


def test_seed_split_sizes(toy600):
    # All present training classes normal: the split's whole train/validation parts are visible.
    with pytest.warns(
        UserWarning, match=r"validation split holds no images of the abnormal classes"
    ):
        split = seed_split(toy600, (0, 1, 2, 3, 4, 5), (9,), valid_fraction=0.1, seed=0)
    assert len(split.normal_train_y) == 540 and len(split.valid_y) == 60
    assert sorted([*split.normal_train_index, *split.valid_index]) == list(range(600))
    train_counts = np.bincount(split.normal_train_y, minlength=6)
    valid_counts = np.bincount(split.valid_y, minlength=6)
    assert (train_counts + valid_counts).tolist() == [100] * 6
    # test: classes 0..5 and 9, 10 each: 70 images, 60 normal, 10 abnormal
    assert len(split.test_y) == 70 and split.test_is_anomaly.sum() == 10
    assert split.test_index.tolist() == [i for i in range(100) if i % 10 in (0, 1, 2, 3, 4, 5, 9)]
    assert (split.test_x[:, 0, 0] == split.test_index % 251).all()
    assert (split.normal_train_x[:, 0, 0] == split.normal_train_index % 251).all()
    assert (split.normal_train_y == split.normal_train_index % 6).all()
    assert list(split.valid_index) == sorted(split.valid_index)


def test_seed_split_selection_and_summary(toy600):
    with pytest.warns(UserWarning):
        reference = seed_split(toy600, range(6), [9], seed=3)
    split = seed_split(toy600, "t-shirt/top,pullover", "sandal", seed=3)
    assert split.normal == (0, 2) and split.abnormal == (5,)
    # same seed, same permutation: the validation images of 0, 2, 5 are those of the full split
    keep = np.isin(reference.valid_y, (0, 2, 5))
    np.testing.assert_array_equal(split.valid_index, reference.valid_index[keep])
    np.testing.assert_array_equal(split.valid_is_anomaly, reference.valid_y[keep] == 5)
    assert len(split.normal_valid_x) + len(split.abnormal_valid_x) == len(split.valid_x)
    assert len(split.normal_test_x) == 20 and len(split.abnormal_test_x) == 10
    summary = split.summary()
    n_valid = {c: int((reference.valid_y == c).sum()) for c in (0, 2, 5)}
    assert summary["normal_classes"] == ["T-shirt/top", "Pullover"]
    assert summary["abnormal_classes"] == ["Sandal"]
    assert summary["normal_train"] == 200 - n_valid[0] - n_valid[2]
    assert summary["valid"] == sum(n_valid.values())
    assert summary["valid_abnormal"] == n_valid[5]
    assert (summary["test"], summary["test_normal"], summary["test_abnormal"]) == (30, 20, 10)
    assert summary["per_class"]["normal_train"] == {
        "T-shirt/top": 100 - n_valid[0],
        "Pullover": 100 - n_valid[2],
    }
    assert summary["per_class"]["test"] == {"T-shirt/top": 10, "Pullover": 10, "Sandal": 10}


def test_seed_split_is_deterministic(toy600):
    a = seed_split(toy600, (0, 2), (5,), seed=0)
    b = seed_split(toy600, (0, 2), (5,), seed=0)
    c = seed_split(toy600, (0, 2), (5,), seed=1)
    np.testing.assert_array_equal(a.valid_index, b.valid_index)
    np.testing.assert_array_equal(a.normal_train_x, b.normal_train_x)
    assert not np.array_equal(a.valid_index, c.valid_index)


@pytest.mark.parametrize(
    ("n", "valid_fraction", "train_size"),
    [(60000, 0.1, 54000), (600, 0.1, 540), (10, 0.3, 7), (7, 0.5, 3), (1000, 0.7, 300)],
)
def test_seed_split_train_size_floors(n, valid_fraction, train_size):
    dataset = Dataset(
        "n",
        np.zeros((n, 1, 1), np.uint8),
        np.zeros(n, int),
        np.zeros((1, 1, 1), np.uint8),
        np.array([1]),
        ("a", "b"),
        "n",
    )
    with pytest.warns(UserWarning, match="validation split holds no images of the abnormal"):
        split = seed_split(dataset, "a", "b", valid_fraction=valid_fraction)
    assert len(split.normal_train_y) == train_size and len(split.valid_y) == n - train_size


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"valid_fraction": 0.0},
            r"`valid_fraction` must be between 0 and 1 \(exclusive\); got 0\.0",
        ),
        ({"valid_fraction": 1}, r"`valid_fraction` must be between 0 and 1 \(exclusive\); got 1"),
        ({"valid_fraction": 0.9999}, r"of 600 training images leaves 0 for training and 600 for"),
        (
            {"normal": (9,)},
            r"`--normal` 9 \(Ankle boot\): the training split holds no images of them",
        ),
        (
            {"normal": "0,5"},
            r"`--normal` must not share classes with `--abnormal`\. Got 5 \(Sandal\)",
        ),
        ({"abnormal": "cat"}, r"`--abnormal` got unknown class 'cat'"),
    ],
)
def test_seed_split_errors(toy600, kwargs, match):
    args = {"normal": (0,), "abnormal": (5,), **kwargs}
    with pytest.raises(InputError, match=match):
        seed_split(toy600, args.pop("normal"), args.pop("abnormal"), **args)


def test_seed_split_warns_without_abnormal_test_images(toy600):
    toy = Dataset(
        "t",
        toy600.x_train,
        toy600.y_train,
        toy600.x_test[:5],
        np.zeros(5, int),
        toy600.class_names,
        "t",
    )
    with pytest.warns(UserWarning, match=r"test set holds no images of the abnormal classes"):
        seed_split(toy, (0,), (5,))


# --- custom datasets ---------------------------------------------------------------------------


def test_load_npz_with_test_part(tmp_path):
    x, y = np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 1, 0])
    xt, yt = np.ones((2, 3, 3), np.uint8), np.array([1, 2])
    np.savez(
        tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt, class_names=np.array(["a", "b", "c"])
    )
    dataset = load_dataset(str(tmp_path / "d.npz"))
    assert dataset.name == "d" and dataset.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(dataset.x_test, xt)
    assert dataset.y_train.tolist() == [0, 1, 1, 0] and dataset.source == str(tmp_path / "d.npz")


def test_load_npz_without_test_part_splits_per_class(tmp_path):
    x = np.arange(50, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(50) % 5)
    dataset = load_dataset(tmp_path / "d.npz", test_fraction=0.2, seed=0)
    assert dataset.class_names == ("0", "1", "2", "3", "4")
    # 10 images per class, 0.2 held out: 2 per class in test, 8 in train
    assert np.bincount(dataset.y_test).tolist() == [2] * 5
    assert np.bincount(dataset.y_train).tolist() == [8] * 5
    assert sorted([*dataset.x_train[:, 0, 0], *dataset.x_test[:, 0, 0]]) == list(range(50))
    again = load_dataset(tmp_path / "d.npz", test_fraction=0.2, seed=0)
    other = load_dataset(tmp_path / "d.npz", test_fraction=0.2, seed=1)
    np.testing.assert_array_equal(dataset.x_test, again.x_test)
    assert not np.array_equal(dataset.x_test, other.x_test)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 2, 2))}, r"must hold arrays `x` and `y` .* it lacks y \(has x\)"),
        (
            {"x": np.zeros((2, 2, 2)), "y": np.zeros(2, int), "x_test": np.zeros((1, 2, 2))},
            r"both `x_test` and `y_test`, or neither",
        ),
        (
            {"x": np.zeros((2, 2, 2)), "y": np.zeros(3, int)},
            r"`y` must be \(N,\) with one label per image \(2\); got \(3,\)",
        ),
        (
            {"x": np.zeros((2, 2, 2)), "y": np.array([0, 1])},
            r"leaves an empty training or test set",
        ),
    ],
)
def test_load_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=match):
        load_dataset(tmp_path / "d.npz")


def _png(path: Path, value: int, size=(8, 8), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_load_class_folders(tmp_path):
    for cls in ("dog", "cat"):
        for i in range(5):
            _png(tmp_path / "pets" / cls / f"{i}.png", 10 * i + (cls == "dog"))
    dataset = load_dataset(tmp_path / "pets", test_fraction=0.2, seed=0)
    assert dataset.class_names == ("cat", "dog") and dataset.name == "pets"
    assert dataset.x_train.shape == (8, 8, 8) and dataset.x_test.shape == (2, 8, 8)
    assert dataset.y_test.tolist() == [0, 1]
    assert sorted(dataset.x_train[:, 0, 0].tolist() + dataset.x_test[:, 0, 0].tolist()) == sorted(
        [10 * i for i in range(5)] + [10 * i + 1 for i in range(5)]
    )


def test_load_class_folders_mixed_colour_becomes_rgb(tmp_path):
    _png(tmp_path / "d" / "a" / "0.png", 5)
    _png(tmp_path / "d" / "a" / "1.png", 6)
    _png(tmp_path / "d" / "b" / "0.png", 7, mode="RGB")
    _png(tmp_path / "d" / "b" / "1.png", 8)
    with pytest.warns(UserWarning, match="3 grayscale and 1 colour images .* made RGB"):
        dataset = load_dataset(tmp_path / "d", test_fraction=0.5)
    assert dataset.x_train.shape == (2, 8, 8, 3) and dataset.image_shape == (3, 8, 8)


def test_load_train_test_folders(tmp_path):
    _png(tmp_path / "d" / "train" / "a" / "0.png", 1)
    _png(tmp_path / "d" / "train" / "b" / "0.bmp", 2)
    _png(tmp_path / "d" / "train" / "b" / "1.png", 3)
    _png(tmp_path / "d" / "test" / "a" / "0.png", 4)
    _png(tmp_path / "d" / "test" / "c" / "0.png", 5)
    dataset = load_dataset(tmp_path / "d")
    assert dataset.class_names == ("a", "b", "c")
    assert dataset.y_train.tolist() == [0, 1, 1] and dataset.y_test.tolist() == [0, 2]
    assert dataset.x_train[:, 0, 0].tolist() == [1, 2, 3] and dataset.x_test[:, 0, 0].tolist() == [
        4,
        5,
    ]


def test_load_idx_folder(tmp_path):
    folder = tmp_path / "digits"
    arrays = write_idx_dataset(folder, n_train=12, n_test=4, gz=False)
    (folder / IDX_FILE_NAMES[2]).unlink()
    write_idx(folder / (IDX_FILE_NAMES[2] + ".gz"), arrays[2])  # raw and .gz mixed
    dataset = load_dataset(folder)
    assert dataset.class_names == tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(dataset.x_test, arrays[2])
    assert dataset.source == str(folder)


def test_load_known_dataset_by_name_with_data_dir(tmp_path):
    write_idx_dataset(tmp_path / "fm", n_train=10, n_test=10)
    dataset = load_dataset("Fashion_MNIST", data_dir=tmp_path / "fm", download=False)
    assert dataset.name == "fashion-mnist" and dataset.class_names[0] == "T-shirt/top"


def test_load_dataset_errors(tmp_path):
    _png(tmp_path / "sizes" / "a" / "0.png", 1)
    _png(tmp_path / "sizes" / "a" / "1.png", 1, size=(6, 7))
    with pytest.raises(
        InputError, match=r"must share a size: .*a/1\.png is 6x7 but .*a/0\.png is 8x8\.$"
    ):
        load_dataset(tmp_path / "sizes")
    _png(tmp_path / "half" / "train" / "a" / "0.png", 1)
    with pytest.raises(
        InputError, match=r"both train/ and test/ class folders, or neither; found only train/"
    ):
        load_dataset(tmp_path / "half")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty holds neither the four IDX files"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(InputError, match=r"cls holds no image files"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(
        InputError,
        match=r"^Dataset 'cifar10' is neither a known dataset nor a path; expected fashion-mnist, mnist, a \.npz file",
    ):
        load_dataset("cifar10")
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(InputError, match=r"x\.csv' is not a \.npz file"):
        load_dataset(tmp_path / "x.csv")
    with pytest.raises(InputError, match=r"`test_fraction` must be between 0 and 1"):
        load_dataset(tmp_path / "sizes", test_fraction=1.5)


# --- the real Fashion-MNIST --------------------------------------------------------------------

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.e2e
def test_real_fashion_mnist_and_the_seeds_split():
    if not DEBIAN_FASHION.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist")
    for datafile in KNOWN_DATASETS["fashion-mnist"].files:
        assert gunzip_sha256(DEBIAN_FASHION / datafile.name) == datafile.sha256
    dataset = load_known_dataset("fashion-mnist", DEBIAN_FASHION, download=False)
    assert dataset.x_train.shape == (60000, 28, 28) and dataset.x_test.shape == (10000, 28, 28)
    assert dataset.x_train.dtype == np.uint8
    assert np.bincount(dataset.y_train).tolist() == [6000] * 10
    split = seed_split(dataset, (0, 2, 6), (7,), seed=0)
    summary = split.summary()
    assert (summary["test"], summary["test_normal"], summary["test_abnormal"]) == (4000, 3000, 1000)
    assert 16000 < summary["normal_train"] < 16500  # the seed had 16,239
    for name in ("T-shirt/top", "Pullover", "Shirt"):
        assert (
            summary["per_class"]["normal_train"][name] + summary["per_class"]["valid"][name] == 6000
        )
    # 54,000 / 6,000: with classes 0..8 normal the whole validation part is visible
    full = seed_split(dataset, range(9), (9,), seed=0)
    assert len(full.valid_y) == 6000
    n_valid_9 = int(full.valid_is_anomaly.sum())
    assert len(full.normal_train_y) + (6000 - n_valid_9) == 54000
