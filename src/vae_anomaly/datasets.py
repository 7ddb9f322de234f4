"""Datasets: Fashion-MNIST/MNIST location and download (IDX files via idx.py), image folders, .npz;
class names; the normal/abnormal selection and the seed's split into arrays.

Images stay uint8 ``(N, H, W)`` (or ``(N, H, W, 3)``) here; :func:`vae_anomaly.images.to_model_layout`
turns them into the model's float32 layout.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_anomaly.errors import DatasetNotFoundError, InputError
from vae_anomaly.files import atomic_open
from vae_anomaly.idx import read_idx, write_idx  # noqa: F401  (write_idx: part of this API)
from vae_anomaly.images import (
    IMAGE_SUFFIXES,
    check_pixel_values,
    list_image_files,
    read_image_file,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Known datasets: where they live and where to download them.

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

# The four files of an IDX dataset, without ".gz", in the order train images, train labels,
# test images, test labels.
IDX_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Where `find_dataset_dir` looks first, after --data-dir: a folder holding the files, or
# holding a `<name>/` folder with them.
DATA_ENV_VAR = "VAE_ANOMALY_DATA"


@dataclass(frozen=True)
class DataFile:
    """One file of a known dataset.

    Attributes:
        name: The file name as served, gzip-compressed, e.g. ``"train-images-idx3-ubyte.gz"``.
        sha256: The SHA-256 of its decompressed content (the same for any mirror's gzip).
    """

    name: str
    sha256: str

    @property
    def raw_name(self) -> str:
        """The name without ``.gz``."""
        return self.name.removesuffix(".gz")


@dataclass(frozen=True)
class KnownDataset:
    """A dataset that can be found on disk or downloaded by name.

    Attributes:
        name: The registry key, e.g. ``"fashion-mnist"``.
        title: The name in messages, e.g. ``"Fashion-MNIST"``.
        class_names: Name of each label, in label order.
        base_urls: Download locations tried in order; each file's URL is base + file name.
        train_images, train_labels, test_images, test_labels: The four IDX files.
        debian_dir: Where a Debian package installs the files, or None.
        apt_package: That package's name, for the "how to get it" message, or None.
        cache_subdir: The folder under the user cache (``~/.cache/vae-anomaly/``).
        keras_dir: Where Keras keeps the same files (``~`` expanded when searched), or None.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    base_urls: tuple[str, ...]
    train_images: DataFile
    train_labels: DataFile
    test_images: DataFile
    test_labels: DataFile
    debian_dir: Path | None
    apt_package: str | None
    cache_subdir: str
    keras_dir: str | None

    @property
    def files(self) -> tuple[DataFile, DataFile, DataFile, DataFile]:
        """The four files: train images, train labels, test images, test labels."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


KNOWN_DATASETS: dict[str, KnownDataset] = {
    "fashion-mnist": KnownDataset(
        name="fashion-mnist",
        title="Fashion-MNIST",
        class_names=FASHION_MNIST_CLASSES,
        base_urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras's mirror
        ),
        # Hashes checked against the files of Debian's dataset-fashion-mnist package.
        train_images=DataFile(
            "train-images-idx3-ubyte.gz",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        train_labels=DataFile(
            "train-labels-idx1-ubyte.gz",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        test_images=DataFile(
            "t10k-images-idx3-ubyte.gz",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        test_labels=DataFile(
            "t10k-labels-idx1-ubyte.gz",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        debian_dir=Path("/usr/share/datasets/fashion-mnist"),
        apt_package="dataset-fashion-mnist",
        cache_subdir="fashion-mnist",
        keras_dir="~/.keras/datasets/fashion-mnist",
    ),
    "mnist": KnownDataset(
        name="mnist",
        title="MNIST",
        class_names=MNIST_CLASSES,
        base_urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # SHA-256 of the decompressed files; a download is checked against them.
        train_images=DataFile(
            "train-images-idx3-ubyte.gz",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        train_labels=DataFile(
            "train-labels-idx1-ubyte.gz",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        test_images=DataFile(
            "t10k-images-idx3-ubyte.gz",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        test_labels=DataFile(
            "t10k-labels-idx1-ubyte.gz",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        debian_dir=None,
        apt_package=None,
        cache_subdir="mnist",
        keras_dir=None,  # Keras keeps MNIST as one mnist.npz, not as IDX files
    ),
}


def _known(name: str) -> KnownDataset | None:
    return KNOWN_DATASETS.get(name.strip().lower().replace("_", "-"))


def _known_or_raise(name: str) -> KnownDataset:
    spec = _known(name)
    if spec is None:
        raise InputError(
            f"Unknown dataset {name!r}; known datasets are {', '.join(KNOWN_DATASETS)}."
        )
    return spec


def user_cache_dir() -> Path:
    """The package's download folder: ``$XDG_CACHE_HOME/vae-anomaly`` or ``~/.cache/vae-anomaly``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return root / "vae-anomaly"


def _locate_files(folder: Path, names: Sequence[str]) -> list[Path | None]:
    """Each file in ``folder`` by its raw name, else by its ``.gz`` name, else None."""
    found: list[Path | None] = []
    for name in names:
        raw, gz = folder / name, folder / f"{name}.gz"
        found.append(raw if raw.is_file() else gz if gz.is_file() else None)
    return found


def _has_files(folder: Path, spec: KnownDataset) -> bool:
    return all(_locate_files(folder, [f.raw_name for f in spec.files]))


def _search_places(spec: KnownDataset) -> list[tuple[str, Path]]:
    """``(label, folder)`` in search order after ``--data-dir``."""
    places: list[tuple[str, Path]] = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        places += [(DATA_ENV_VAR, Path(env)), (DATA_ENV_VAR, Path(env) / spec.name)]
    if spec.debian_dir is not None:
        places.append(("debian", spec.debian_dir))
    places.append(("cache", user_cache_dir() / spec.cache_subdir))
    if spec.keras_dir is not None:
        places.append(("keras", Path(spec.keras_dir).expanduser()))
    return places


def find_dataset_dir(
    name: str, data_dir: str | os.PathLike | None = None
) -> tuple[Path, str] | None:
    """Find the folder holding a known dataset's four IDX files (raw or ``.gz``).

    The search order: ``data_dir`` (or its ``<name>/`` folder), then ``$VAE_ANOMALY_DATA``
    (or its ``<name>/`` folder), the Debian package's folder, the user cache
    (``$XDG_CACHE_HOME/vae-anomaly/<name>``), and Keras's ``~/.keras/datasets/<name>``.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"`` (case-insensitive, ``_`` for ``-``).
        data_dir: A folder to use instead of searching.

    Returns:
        ``(folder, label)`` where label says where it was found (``"--data-dir"``,
        ``"VAE_ANOMALY_DATA"``, ``"debian"``, ``"cache"``, ``"keras"``), or None if nowhere.

    Raises:
        InputError: An unknown name, or ``data_dir`` given without the files (no further search).
    """
    spec = _known_or_raise(name)
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise InputError(f"`--data-dir` {folder} does not exist or is not a folder.")
        for candidate in (folder, folder / spec.name):
            if _has_files(candidate, spec):
                return candidate, "--data-dir"
        located = _locate_files(folder, [f.raw_name for f in spec.files])
        missing = [f.raw_name for f, path in zip(spec.files, located, strict=True) if path is None]
        raise InputError(
            f"`--data-dir` {folder} lacks the {spec.title} files {', '.join(missing)} "
            "(each raw or .gz)."
        )
    for label, folder in _search_places(spec):
        if _has_files(folder, spec):
            return folder, label
    return None


# ---------------------------------------------------------------------------------------------
# Download.


class _DownloadFailed(Exception):
    """Every URL of one file failed; the message says why (internal)."""


class _GunzipSha256:
    """SHA-256 of the decompressed content of a gzip stream fed in chunks."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def update(self, chunk: bytes) -> None:
        while chunk:
            self._hash.update(self._inflater.decompress(chunk))
            # A gzip file may hold several members back to back.
            chunk = self._inflater.unused_data if self._inflater.eof else b""
            if chunk:
                self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def hexdigest(self) -> str:
        if not self._inflater.eof:
            raise zlib.error("the gzip stream ends early")
        return self._hash.hexdigest()


def _fetch(url: str, target: Path, expected_sha256: str, timeout: float, progress: bool) -> None:
    """Download ``url`` to ``target`` atomically if its decompressed SHA-256 matches."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = None
        if progress:
            from tqdm import tqdm

            total = int(length) if length and length.isdigit() else None
            bar = tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, leave=False, disable=None
            )
        try:
            with atomic_open(target, "wb") as out:  # removed unless the block completes
                digest = _GunzipSha256()
                try:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    got = digest.hexdigest()
                except zlib.error as exc:
                    raise _DownloadFailed(
                        f"{target.name} from {url} is not valid gzip: {exc}; not kept"
                    ) from None
                if got != expected_sha256.lower():
                    raise _DownloadFailed(
                        f"{target.name} from {url} has SHA-256 {got}, expected "
                        f"{expected_sha256}; not kept"
                    )
        finally:
            if bar is not None:
                bar.close()


def _download_into(spec: KnownDataset, dest: Path, base_urls, timeout, progress) -> None:
    urls = tuple(base_urls) if base_urls is not None else spec.base_urls
    for datafile in spec.files:
        if _locate_files(dest, [datafile.raw_name])[0] is not None:
            continue
        reasons = []
        for base in urls:
            url = base if base.endswith("/") else base + "/"
            url += datafile.name
            logger.info("downloading %s", url)
            try:
                _fetch(url, dest / datafile.name, datafile.sha256, timeout, progress)
                break
            except _DownloadFailed as exc:
                reasons.append(str(exc))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                reasons.append(f"{url}: {reason}")
        else:
            raise _DownloadFailed("; ".join(reasons) or "no download URL")


def _how_to_get(spec: KnownDataset) -> str:
    files = "the four IDX files"
    if spec.apt_package:
        return (
            f"Install it with `apt-get install {spec.apt_package}`, "
            f"or pass --data-dir DIR holding {files}."
        )
    return f"Pass --data-dir DIR holding {files} ({', '.join(f.name for f in spec.files)})."


def _not_found(spec: KnownDataset, places: Sequence[Path], reason: str | None) -> str:
    where = ", ".join(str(p) for p in dict.fromkeys(places))
    if reason is None:
        return f"{spec.title} not found in {where} and downloading is off. {_how_to_get(spec)}"
    return (
        f"{spec.title} not found in {where} and the download failed ({reason}). {_how_to_get(spec)}"
    )


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    base_urls: Sequence[str] | None = None,
    timeout: float = 30.0,
    progress: bool = False,
) -> Path:
    """Download a known dataset's missing IDX files, verifying each before keeping it.

    Each file is written to a temporary file and renamed only once the SHA-256 of its
    decompressed content matches the registry; the URLs are tried in order.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        dest_dir: Where to put the files; default the user cache
            (``$XDG_CACHE_HOME/vae-anomaly/<name>``).
        base_urls: Download locations to use instead of the registry's.
        timeout: Seconds to wait on each network operation.
        progress: Show a tqdm progress bar per file.

    Returns:
        The folder holding the four files.

    Raises:
        DatasetNotFoundError: A file could not be downloaded from any URL, or none matched
            its SHA-256 (the message names the file and both hashes, and how to get the data).
    """
    spec = _known_or_raise(name)
    dest = Path(dest_dir) if dest_dir is not None else user_cache_dir() / spec.cache_subdir
    try:
        _download_into(spec, dest, base_urls, timeout, progress)
    except _DownloadFailed as exc:
        raise DatasetNotFoundError(_not_found(spec, [dest], str(exc))) from None
    return dest


# ---------------------------------------------------------------------------------------------
# Datasets in memory.


@dataclass
class Dataset:
    """Images and labels of a training and a test set.

    Attributes:
        name: e.g. ``"fashion-mnist"``, or the file/folder name of a custom dataset.
        x_train: ``(N, H, W)`` or ``(N, H, W, C)`` uint8 (float in [0, 1] from a .npz).
        y_train: ``(N,)`` int64 class ids.
        x_test: ``(M, H, W)`` or ``(M, H, W, C)``, the same image shape as ``x_train``.
        y_test: ``(M,)`` int64 class ids.
        class_names: Name of each class id.
        source: Where it came from (a folder, file, or ``"label: folder"``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        self.class_names = tuple(str(c) for c in self.class_names)
        if not self.class_names:
            raise InputError(f"Dataset {self.name} must have at least one class name.")
        if len(set(self.class_names)) != len(self.class_names):
            raise InputError(
                f"Dataset {self.name} has duplicate class names: {list(self.class_names)}."
            )
        self.x_train = self._check_images(self.x_train, "x_train")
        self.x_test = self._check_images(self.x_test, "x_test")
        self.y_train = self._check_labels(self.y_train, self.x_train, "y_train")
        self.y_test = self._check_labels(self.y_test, self.x_test, "y_test")
        if len(self.x_train) == 0:
            raise InputError(f"Dataset {self.name} has no training images.")
        if len(self.x_test) and self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise InputError(
                f"Dataset {self.name}: test images are {self.x_test.shape[1:]} but training "
                f"images are {self.x_train.shape[1:]}; they must share a shape."
            )

    def _check_images(self, x: np.ndarray, field: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
            raise InputError(
                f"Dataset {self.name}: `{field}` must be (N, H, W) or (N, H, W, C) with C 1 or 3; "
                f"got shape {x.shape}."
            )
        return check_pixel_values(x, name=f"{self.name} {field}")

    def _check_labels(self, y: np.ndarray, x: np.ndarray, field: str) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(
                f"Dataset {self.name}: `{field}` must be (N,) with one label per image "
                f"({len(x)}); got shape {y.shape}."
            )
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
            raise InputError(
                f"Dataset {self.name}: `{field}` must hold integer class ids; got dtype {y.dtype}."
            )
        y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
            raise InputError(
                f"Dataset {self.name}: `{field}` must hold class ids 0 to "
                f"{len(self.class_names) - 1} (one per class name); got {y.min()} to {y.max()}."
            )
        return y

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The model's ``(C, H, W)`` for these images, e.g. ``(1, 28, 28)``."""
        shape = self.x_train.shape
        return (shape[3] if len(shape) == 4 else 1, shape[1], shape[2])


def _read_idx_dataset(
    folder: Path, names: Sequence[str], dataset_name: str, class_names, source: str
) -> Dataset:
    paths = _locate_files(folder, names)
    missing = [n for n, p in zip(names, paths, strict=True) if p is None]
    if missing:
        raise InputError(f"{folder} lacks the IDX files {', '.join(missing)} (each raw or .gz).")
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    for array, path in ((x_train, paths[0]), (x_test, paths[2])):
        if array.ndim not in (3, 4):
            raise InputError(f"{path} must hold images (N, H, W); got shape {array.shape}.")
    for array, path in ((y_train, paths[1]), (y_test, paths[3])):
        if array.ndim != 1:
            raise InputError(f"{path} must hold labels (N,); got shape {array.shape}.")
    if class_names is None:
        top = max(int(y_train.max(initial=0)), int(y_test.max(initial=0)))
        class_names = tuple(str(i) for i in range(top + 1))
    return Dataset(dataset_name, x_train, y_train, x_test, y_test, class_names, source)


def load_known_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = False,
) -> Dataset:
    """Load Fashion-MNIST or MNIST from disk, downloading it to the user cache if missing.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        data_dir: A folder holding the four IDX files; no other place is searched then.
        download: Download when the files are nowhere on disk.
        progress: Show download progress.

    Returns:
        The dataset: e.g. Fashion-MNIST ``x_train`` uint8 ``(60000, 28, 28)``, ``x_test``
        ``(10000, 28, 28)``.

    Raises:
        DatasetNotFoundError: Not on disk and not downloadable; the message says how to get it.
        InputError: ``data_dir`` lacks the files, or a file is corrupt.
    """
    spec = _known_or_raise(name)
    found = find_dataset_dir(spec.name, data_dir)
    if found is None:
        places = [folder for _, folder in _search_places(spec)]
        if not download:
            raise DatasetNotFoundError(_not_found(spec, places, None))
        try:
            folder = user_cache_dir() / spec.cache_subdir
            _download_into(spec, folder, None, 30.0, progress)
        except _DownloadFailed as exc:
            raise DatasetNotFoundError(_not_found(spec, places, str(exc))) from None
        found = (folder, "download")
    folder, label = found
    names = [f.raw_name for f in spec.files]
    return _read_idx_dataset(folder, names, spec.name, spec.class_names, f"{label}: {folder}")


def _check_fraction(value: float, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InputError(f"`{option}` must be between 0 and 1 (exclusive); got {value!r}.")
    return float(value)


def _stratified_split(
    y: np.ndarray, test_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(test_fraction * n_c)`` random images of each class c: (train, test) indices."""
    rng = np.random.default_rng(seed)
    held_out = [
        rng.permutation(np.flatnonzero(y == c))[: int(np.sum(y == c) * test_fraction + 0.5)]
        for c in np.unique(y)
    ]
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(held_out)] = True
    if is_test.all() or not is_test.any():
        raise InputError(
            f"{source}: holding out a `test_fraction` of {test_fraction} of {len(y)} images "
            "leaves an empty training or test set; add images or change the fraction."
        )
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _load_npz_dataset(path: Path, test_fraction: float, seed: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable .npz file: {exc}") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise InputError(
            f"{path} must hold arrays `x` and `y` (optional `x_test`, `y_test`, `class_names`); "
            f"it lacks {', '.join(missing)} (has {', '.join(arrays) or 'none'})."
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise InputError(f"{path} must hold both `x_test` and `y_test`, or neither.")
    x, y = arrays["x"], np.asarray(arrays["y"])
    if "class_names" in arrays:
        class_names = tuple(str(c) for c in np.asarray(arrays["class_names"]).ravel())
    else:
        tops = [int(v.max()) for v in (y, arrays.get("y_test")) if v is not None and v.size]
        class_names = tuple(str(i) for i in range(max(tops, default=0) + 1))
    if "x_test" in arrays:
        x_train, y_train, x_test, y_test = x, y, arrays["x_test"], arrays["y_test"]
    else:
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(
                f"{path}: `y` must be (N,) with one label per image ({len(x)}); got {y.shape}."
            )
        train, test = _stratified_split(y, test_fraction, seed, str(path))
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    return Dataset(path.stem, x_train, y_train, x_test, y_test, class_names, str(path))


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_labelled_files(files: Sequence[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(file, label)`` pairs into uint8 ``(N, H, W)`` (all grayscale) or ``(N, H, W, 3)``."""
    images, first = [], None
    for path, _ in files:
        image = read_image_file(path)
        if first is None:
            first = (path, image.shape[:2])
        elif image.shape[:2] != first[1]:
            raise InputError(
                f"Images in one dataset must share a size: {path} is "
                f"{image.shape[0]}x{image.shape[1]} but {first[0]} is {first[1][0]}x{first[1][1]}."
            )
        images.append(image)
    n_colour = sum(image.ndim == 3 for image in images)
    if 0 < n_colour < len(images):
        warnings.warn(
            f"{len(images) - n_colour} grayscale and {n_colour} colour images in one dataset: the "
            "grayscale ones are made RGB (their channel replicated).",
            stacklevel=2,
        )
        images = [img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2) for img in images]
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.stack(images), labels


def _class_files(folder: Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(class_names):
        if (folder / name).is_dir():
            files += [(path, label) for path in list_image_files(folder / name)]
    return files


def _load_folder_dataset(folder: Path, test_fraction: float, seed: int) -> Dataset:
    subfolders = _subfolders(folder)
    if all(_locate_files(folder, IDX_FILE_NAMES)):
        return _read_idx_dataset(folder, IDX_FILE_NAMES, folder.name, None, str(folder))
    if "train" in subfolders or "test" in subfolders:
        if not ("train" in subfolders and "test" in subfolders):
            raise InputError(
                f"{folder} must hold both train/ and test/ class folders, or neither; "
                f"found only {'train' if 'train' in subfolders else 'test'}/."
            )
        class_names = sorted(set(_subfolders(folder / "train")) | set(_subfolders(folder / "test")))
        if not class_names:
            raise InputError(f"{folder}/train and {folder}/test hold no class folders.")
        train_files = _class_files(folder / "train", class_names)
        test_files = _class_files(folder / "test", class_names)
        if not train_files or not test_files:
            raise InputError(f"{folder}: train/ and test/ must each hold at least one image.")
        x, y = _read_labelled_files(train_files + test_files)
        n = len(train_files)
        return Dataset(folder.name, x[:n], y[:n], x[n:], y[n:], tuple(class_names), str(folder))
    if not subfolders and any(
        p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        for p in folder.iterdir()
    ):
        # A plain folder of images: one class, named after the folder (e.g. normal images only).
        x, y = _read_labelled_files([(path, 0) for path in list_image_files(folder)])
        train, test = _stratified_split(y, test_fraction, seed, str(folder))
        return Dataset(
            folder.name, x[train], y[train], x[test], y[test], (folder.name,), str(folder)
        )
    if not subfolders:
        raise InputError(
            f"{folder} holds neither the four IDX files ({', '.join(IDX_FILE_NAMES)}), "
            "train/ and test/ class folders, nor one folder per class."
        )
    x, y = _read_labelled_files(_class_files(folder, subfolders))
    train, test = _stratified_split(y, test_fraction, seed, str(folder))
    return Dataset(
        folder.name, x[train], y[train], x[test], y[test], tuple(subfolders), str(folder)
    )


def load_dataset(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
    progress: bool = False,
) -> Dataset:
    """Load a known dataset by name, or a custom one from a ``.npz`` file or a folder.

    Accepted sources:
        - ``"fashion-mnist"`` or ``"mnist"`` (case-insensitive; ``"fashion_mnist"`` too).
        - A ``.npz`` file with ``x`` ``(N, H, W[, C])`` and ``y`` ``(N,)``, optionally
          ``x_test``, ``y_test`` and ``class_names`` (strings; default ``"0"``..``"K-1"``).
        - A folder with ``train/<class>/`` and ``test/<class>/`` image folders (class names:
          the sorted union of both).
        - A folder with one image folder per class.
        - A folder holding the four IDX files (``train-images-idx3-ubyte[.gz]``, ...; class
          names ``"0"``..``"K-1"``).

    Image folders are read grayscale when every image is, else RGB; all images must share a
    size. Without a test part, a seeded split per class holds out ``test_fraction``.

    Args:
        source: The dataset name, file or folder.
        data_dir: For a known dataset, the folder holding its files (ignored otherwise).
        test_fraction: The share of each class held out as test when there is no test part.
        seed: Seed of that split.
        download: For a known dataset, download it when missing.
        progress: Show download progress.

    Returns:
        The dataset.

    Raises:
        InputError: An unknown source, or files that do not fit the rules above.
        DatasetNotFoundError: A known dataset is missing and cannot be downloaded.
    """
    spec = _known(str(source))
    if spec is not None:
        return load_known_dataset(spec.name, data_dir, download=download, progress=progress)
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    path = Path(source)
    accepted = (
        f"{', '.join(KNOWN_DATASETS)}, a .npz file with x and y, a folder of class folders, "
        "a folder with train/ and test/ class folders, or a folder of four IDX files"
    )
    if path.is_dir():
        return _load_folder_dataset(path, test_fraction, seed)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz_dataset(path, test_fraction, seed)
    what = "is not a .npz file" if path.is_file() else "is neither a known dataset nor a path"
    raise InputError(f"Dataset {str(source)!r} {what}; expected {accepted}.")


# ---------------------------------------------------------------------------------------------
# Classes: the normal/abnormal selection.


def _class_label(index: int, class_names: Sequence[str]) -> str:
    name = class_names[index]
    return str(index) if name == str(index) else f"{index} ({name})"


def _valid_classes_text(class_names: Sequence[str]) -> str:
    return ", ".join(_class_label(i, class_names) for i in range(len(class_names)))


def parse_classes(
    spec: str | Sequence[str | int],
    class_names: Sequence[str],
    *,
    option: str = "--normal",
) -> tuple[int, ...]:
    """Parse a class selection into class ids.

    An item is a class name (case-insensitive, the full name) or a class index; a name wins
    over an index when a name is itself a number (folders named ``"1"``, ``"2"``, ...).
    Repeated classes are kept once, in the order first given.

    Args:
        spec: ``"0,2,6"``, ``"t-shirt/top,pullover,shirt"``, ``"sneaker"``, or a list of
            ints and names.
        class_names: The dataset's class names, in id order.
        option: The option's name in error messages.

    Returns:
        Class ids, e.g. ``(0, 2, 6)``.

    Raises:
        InputError: An empty selection, an unknown name, or an index out of range.
    """
    items: list[str | int]
    if isinstance(spec, str):
        items = [part.strip() for part in spec.split(",") if part.strip()]
    else:
        items = list(spec)
    if not items:
        raise InputError(f"`{option}` must name at least one class; got {spec!r}.")
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    ids: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise InputError(f"`{option}` got {item!r}; expected class names or indices.")
        if isinstance(item, int | np.integer):
            index = int(item)
        elif isinstance(item, str) and item.strip().lower() in by_name:
            index = by_name[item.strip().lower()]
        elif isinstance(item, str) and item.strip().isdigit():
            index = int(item.strip())
        else:
            raise InputError(
                f"`{option}` got unknown class {item!r}; valid classes are "
                f"{_valid_classes_text(class_names)} (names case-insensitive, or indices)."
            )
        if not 0 <= index < len(class_names):
            raise InputError(
                f"`{option}` got class index {index}; valid indices are 0 to "
                f"{len(class_names) - 1}."
            )
        if index not in ids:
            ids.append(index)
    return tuple(ids)


def check_classes(
    normal: Sequence[int], abnormal: Sequence[int], *, class_names: Sequence[str]
) -> None:
    """Check a normal/abnormal selection: both non-empty, in range, and disjoint.

    Args:
        normal: Normal class ids, e.g. ``(0, 2, 6)``.
        abnormal: Abnormal class ids, e.g. ``(7,)``.
        class_names: The dataset's class names.

    Raises:
        InputError: e.g. "`--normal` must not share classes with `--abnormal`. Got 7 (Sneaker)
            in both."
    """
    for option, ids in (("--normal", normal), ("--abnormal", abnormal)):
        if len(ids) == 0:
            raise InputError(f"`{option}` must name at least one class; got none.")
        for index in ids:
            if not 0 <= int(index) < len(class_names):
                raise InputError(
                    f"`{option}` got class index {index}; valid indices are 0 to "
                    f"{len(class_names) - 1}."
                )
    shared = [int(i) for i in dict.fromkeys(normal) if i in set(abnormal)]
    if shared:
        both = ", ".join(_class_label(i, class_names) for i in shared)
        raise InputError(
            f"`--normal` must not share classes with `--abnormal`. Got {both} in both."
        )


@dataclass
class SeedSplit:
    """The seed's split: normal training images, and labelled validation and test images.

    Attributes:
        normal_train_x: ``(N_train, H, W[, C])`` training images of the normal classes.
        normal_train_y: ``(N_train,)`` their class ids.
        normal_train_index: ``(N_train,)`` their indices in the dataset's training set.
        valid_x: ``(N_valid, H, W[, C])`` validation images of the normal or abnormal classes.
        valid_y: ``(N_valid,)`` their class ids.
        valid_is_anomaly: ``(N_valid,)`` bool, True for the abnormal classes.
        valid_index: ``(N_valid,)`` their indices in the dataset's training set.
        test_x: ``(N_test, H, W[, C])`` test images of the normal or abnormal classes.
        test_y: ``(N_test,)`` their class ids.
        test_is_anomaly: ``(N_test,)`` bool, True for the abnormal classes.
        test_index: ``(N_test,)`` their indices in the dataset's test set.
        normal: The normal class ids.
        abnormal: The abnormal class ids.
        class_names: The dataset's class names.
    """

    normal_train_x: np.ndarray
    normal_train_y: np.ndarray
    normal_train_index: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    valid_is_anomaly: np.ndarray
    valid_index: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_is_anomaly: np.ndarray
    test_index: np.ndarray
    normal: tuple[int, ...]
    abnormal: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def normal_valid_x(self) -> np.ndarray:
        """Validation images of the normal classes."""
        return self.valid_x[~self.valid_is_anomaly]

    @property
    def abnormal_valid_x(self) -> np.ndarray:
        """Validation images of the abnormal classes."""
        return self.valid_x[self.valid_is_anomaly]

    @property
    def normal_test_x(self) -> np.ndarray:
        """Test images of the normal classes."""
        return self.test_x[~self.test_is_anomaly]

    @property
    def abnormal_test_x(self) -> np.ndarray:
        """Test images of the abnormal classes."""
        return self.test_x[self.test_is_anomaly]

    def summary(self) -> dict:
        """Counts per subset and per class, as plain JSON values.

        Returns:
            e.g. ``{"normal_classes": ["T-shirt/top", ...], "abnormal_classes": ["Sneaker"],
            "normal_train": 16200, "valid": 2400, "valid_normal": 1800, "valid_abnormal": 600,
            "test": 4000, "test_normal": 3000, "test_abnormal": 1000,
            "per_class": {"normal_train": {"T-shirt/top": 5400, ...}, "valid": {...},
            "test": {...}}}``.
        """

        def per_class(y: np.ndarray, classes: Sequence[int]) -> dict[str, int]:
            return {self.class_names[c]: int(np.sum(y == c)) for c in classes}

        selected = (*self.normal, *self.abnormal)

        return {
            "normal_classes": [self.class_names[c] for c in self.normal],
            "abnormal_classes": [self.class_names[c] for c in self.abnormal],
            "normal_train": len(self.normal_train_y),
            "valid": len(self.valid_y),
            "valid_normal": int(np.sum(~self.valid_is_anomaly)),
            "valid_abnormal": int(np.sum(self.valid_is_anomaly)),
            "test": len(self.test_y),
            "test_normal": int(np.sum(~self.test_is_anomaly)),
            "test_abnormal": int(np.sum(self.test_is_anomaly)),
            "per_class": {
                "normal_train": per_class(self.normal_train_y, self.normal),
                "valid": per_class(self.valid_y, selected),
                "test": per_class(self.test_y, selected),
            },
        }


def seed_split(
    dataset: Dataset,
    normal: str | Sequence[str | int],
    abnormal: str | Sequence[str | int],
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    allow_no_abnormal: bool = False,
) -> SeedSplit:
    """Split a dataset as the seed did.

    The training images are permuted with ``np.random.default_rng(seed)``; the first
    ``floor(N * (1 - valid_fraction))`` (60,000 -> 54,000) are train, the rest validation
    (each kept in dataset order). Normal train = train images of the normal classes;
    validation = validation images of the normal or abnormal classes; test = test images
    of the normal or abnormal classes.

    Args:
        dataset: The dataset.
        normal: Normal classes, as for :func:`parse_classes`, e.g. ``(0, 2, 6)``.
        abnormal: Abnormal classes, e.g. ``(7,)``.
        valid_fraction: The share of the training images held out for validation.
        seed: Seed of the permutation.
        allow_no_abnormal: Accept an empty ``abnormal`` (training on normal images only, e.g.
            ``vae-anomaly train`` without ``--abnormal``); validation and test then hold normal
            images only, without a warning.

    Returns:
        The split.

    Raises:
        InputError: Bad classes, a fraction outside (0, 1), or no normal training images.

    Warns:
        UserWarning: Validation or test holds no abnormal (or validation no normal) images.
    """
    names = dataset.class_names
    normal_ids = parse_classes(normal, names, option="--normal")
    if allow_no_abnormal and not len(abnormal):
        abnormal_ids: tuple[int, ...] = ()
    else:
        abnormal_ids = parse_classes(abnormal, names, option="--abnormal")
        check_classes(normal_ids, abnormal_ids, class_names=names)
    valid_fraction = _check_fraction(valid_fraction, "valid_fraction")
    n = len(dataset.y_train)
    # The epsilon keeps 60000 * 0.9 = 54000.000000000007 (or 53999.99...) at 54000.
    train_size = math.floor(n * (1 - valid_fraction) + 1e-9)
    if not 0 < train_size < n:
        raise InputError(
            f"`valid_fraction` {valid_fraction} of {n} training images leaves "
            f"{train_size} for training and {n - train_size} for validation; both must be > 0."
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, valid_idx = np.sort(order[:train_size]), np.sort(order[train_size:])
    selected = np.array((*normal_ids, *abnormal_ids))
    y_train, y_test = dataset.y_train, dataset.y_test

    normal_train_index = train_idx[np.isin(y_train[train_idx], normal_ids)]
    if len(normal_train_index) == 0:
        labels = ", ".join(_class_label(i, names) for i in normal_ids)
        raise InputError(f"`--normal` {labels}: the training split holds no images of them.")
    valid_index = valid_idx[np.isin(y_train[valid_idx], selected)]
    test_index = np.flatnonzero(np.isin(y_test, selected))
    split = SeedSplit(
        normal_train_x=dataset.x_train[normal_train_index],
        normal_train_y=y_train[normal_train_index],
        normal_train_index=normal_train_index,
        valid_x=dataset.x_train[valid_index],
        valid_y=y_train[valid_index],
        valid_is_anomaly=np.isin(y_train[valid_index], abnormal_ids),
        valid_index=valid_index,
        test_x=dataset.x_test[test_index],
        test_y=y_test[test_index],
        test_is_anomaly=np.isin(y_test[test_index], abnormal_ids),
        test_index=test_index,
        normal=normal_ids,
        abnormal=abnormal_ids,
        class_names=names,
    )
    if not abnormal_ids:
        return split
    if not split.valid_is_anomaly.any():
        warnings.warn(
            "The validation split holds no images of the abnormal classes; thresholds fitted "
            "on validation anomalies cannot be used.",
            UserWarning,
            stacklevel=2,
        )
    if split.valid_is_anomaly.all():
        warnings.warn(
            "The validation split holds no images of the normal classes.", UserWarning, stacklevel=2
        )
    if not split.test_is_anomaly.any():
        warnings.warn(
            "The test set holds no images of the abnormal classes.", UserWarning, stacklevel=2
        )
    return split
