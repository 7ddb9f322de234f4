"""Images in: the one function that turns arrays into the model's layout, and image files.

Arrays enter the model through :func:`to_model_layout`, which accepts ``(N, H, W)`` or
``(N, H, W, C)`` (C 1 or 3), uint8 or float in [0, 1], and returns float32 ``(N, C, H, W)``.
Image files (PNG, JPEG, BMP) are read with Pillow by :func:`read_image_file`;
:func:`conform_images` makes images fit a model's ``(C, H, W)``; :func:`iter_image_batches`
streams files, folders, ``.npy``/``.npz`` and IDX files in batches of bounded memory.

Within this module, a grayscale stack is ``(N, H, W)`` and a colour stack ``(N, H, W, 3)``.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vae_anomaly.errors import InputError
from vae_anomaly.idx import read_idx

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# Pillow modes that hold one channel; any other mode (RGB, RGBA, P, CMYK, ...) is read as RGB.
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
# Names of IDX files: "x.idx", "x.idx3", "train-images-idx3-ubyte", each with or without ".gz".
_IDX_NAME = re.compile(r"(\.idx\d?|-ubyte)$", re.IGNORECASE)


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))


def _check_dtype(array: np.ndarray, name: str) -> None:
    """Reject dtypes that are not pixels (bool, complex, object, strings, ...)."""
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InputError(
            f"`{name}` must hold uint8 pixels (0..255) or floats in [0, 1]; got dtype {array.dtype}."
        )


def check_pixel_values(images: np.ndarray, *, name: str = "images") -> np.ndarray:
    """Check that pixel values are uint8-range integers or finite floats in [0, 1].

    Args:
        images: Array of any shape.
        name: What to call the array in error messages.

    Returns:
        ``images`` unchanged if uint8 or float; other integer dtypes cast to uint8.

    Raises:
        InputError: bool/complex/object dtype, integers outside 0..255, NaN/inf, or floats
            outside [0, 1].
    """
    _check_dtype(images, name)
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.integer):
        if images.size:
            low, high = int(images.min()), int(images.max())
            if low < 0 or high > 255:
                raise InputError(
                    f"`{name}` must hold integer pixels in 0..255; got values from {low} to {high}."
                )
        return images.astype(np.uint8)
    if images.size == 0:
        return images
    finite = np.isfinite(images)
    if not finite.all():
        bad = int(images.size - np.count_nonzero(finite))
        raise InputError(
            f"`{name}` must hold finite floats in [0, 1]; got {bad} NaN or infinite value(s)."
        )
    low, high = float(images.min()), float(images.max())
    if high > 1.0:
        raise InputError(
            f"`{name}` must hold floats in [0, 1]; got values up to {high:g}. "
            "Divide by 255, or pass uint8 pixels."
        )
    if low < 0.0:
        raise InputError(f"`{name}` must hold floats in [0, 1]; got values down to {low:g}.")
    return images


def to_model_layout(images: np.ndarray, *, name: str = "images") -> np.ndarray:
    """Turn images into the model's float32 ``(N, C, H, W)`` layout.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` with C 1 or 3; uint8 (or another integer
            dtype with values in 0..255), divided by 255, or float with values in [0, 1].
        name: What to call the array in error messages (e.g. ``"X"``).

    Returns:
        A C-contiguous float32 array ``(N, C, H, W)``, e.g. ``(N, 1, 28, 28)``.

    Raises:
        InputError: Any other shape (a single image, channels-first, 4 channels, N = 0),
            dtype or value range; the message states what it got and what was expected.
    """
    array = np.asarray(images)
    _check_dtype(array, name)
    expected = "(N, H, W) or (N, H, W, C) with C 1 or 3"
    shape = _shape_text(array.shape)
    if array.ndim == 2:
        raise InputError(
            f"`{name}` must have shape {expected}; got {shape}. "
            "For a single image pass images[None]."
        )
    if array.ndim not in (3, 4):
        raise InputError(f"`{name}` must have shape {expected}; got {shape}.")
    if array.ndim == 4 and array.shape[3] not in (1, 3):
        hint = (
            " It looks channels-first: move the channel axis last."
            if array.shape[1] in (1, 3)
            else ""
        )
        raise InputError(f"`{name}` must have shape {expected}; got {shape}.{hint}")
    if min(array.shape) == 0:
        raise InputError(f"`{name}` must hold at least one non-empty image; got shape {shape}.")
    array = check_pixel_values(array, name=name)
    array = array[:, None, :, :] if array.ndim == 3 else array.transpose(0, 3, 1, 2)
    if array.dtype == np.uint8:
        # float32 / float32 is correctly rounded: 51 -> float32(0.2), 255 -> 1.0 exactly.
        out = array.astype(np.float32)
        out /= np.float32(255.0)
        return np.ascontiguousarray(out)
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_size(size: tuple[int, int] | None, name: str = "size") -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be (height, width); got {size!r}.") from None
    if height < 1 or width < 1:
        raise InputError(f"`{name}` must be two positive integers (height, width); got {size!r}.")
    return height, width


def _check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise InputError(f"`channels` must be 1, 3 or None; got {channels!r}.")


def _to_8bit(image: Image.Image) -> np.ndarray:
    """Pixels of a Pillow image as uint8 ``(H, W)`` (one channel) or ``(H, W, 3)``."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit (and 32-bit int) grayscale: scale 0..65535 to 0..255 with rounding.
        values = np.asarray(image)
        if mode == "F":
            return np.clip(np.rint(values), 0, 255).astype(np.uint8)
        values = np.clip(values.astype(np.int64), 0, 65535)
        return ((values * 255 + 32767) // 65535).astype(np.uint8)
    if mode in _GRAY_MODES:
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA"):
        image = image.convert("RGBA")  # palette transparency is applied before dropping alpha
    return np.asarray(image.convert("RGB"))


def read_image_file(
    path: str | os.PathLike,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a PNG, JPEG or BMP file as uint8 pixels.

    Grayscale modes (1, L, LA, 16-bit I;16, scaled to 8 bits) give one channel; colour modes
    (RGB, RGBA, P, CMYK, ...) give RGB, alpha dropped. EXIF orientation is applied.

    Args:
        path: The image file.
        channels: 1 converts colour to grayscale (ITU-R 601-2 luma, Pillow's ``"L"``), 3
            replicates a grayscale image; None keeps the file's own.
        size: ``(H, W)`` to resize to (bilinear), or None to keep the file's size.

    Returns:
        uint8 ``(H, W)`` for one channel, ``(H, W, 3)`` for colour.

    Raises:
        InputError: The file does not exist or is not a readable image.
    """
    _check_channels(channels)
    size = _check_size(size)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image file {path} does not exist.")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            pixels = _to_8bit(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path} is not a readable PNG/JPEG/BMP image: {exc}") from None
    if channels == 1 and pixels.ndim == 3:
        pixels = _rgb_to_gray(pixels)
    elif channels == 3 and pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if size is not None and pixels.shape[:2] != size:
        pixels = _resize_one(pixels, size)
    return np.ascontiguousarray(pixels)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """List the image files under a folder, recursively.

    Args:
        folder: The folder to search; hidden files and folders (``.name``) are skipped.

    Returns:
        Sorted paths whose suffix is one of :data:`IMAGE_SUFFIXES`, in any case.

    Raises:
        InputError: The folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Image folder {folder} does not exist or is not a folder.")
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        found.extend(
            Path(root, name)
            for name in files
            if not _is_hidden(name) and name.lower().endswith(IMAGE_SUFFIXES)
        )
    if not found:
        raise InputError(
            f"Image folder {folder} holds no image files (expected {', '.join(IMAGE_SUFFIXES)})."
        )
    return sorted(found)


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of ``(..., 3)`` pixels, as Pillow's ``convert("L")`` computes it."""
    if rgb.dtype == np.uint8:
        wide = rgb.astype(np.uint32)
        # Pillow's fixed-point weights 19595, 38470, 7471 (/ 65536) for 0.299, 0.587, 0.114.
        luma = (wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)
    weights = np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)
    return (rgb @ weights).astype(rgb.dtype)


def _resize_one(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(H, W)`` or ``(H, W, 3)`` to ``size`` (H, W), keeping the dtype."""
    height, width = size
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    planes = image[:, :, None] if image.ndim == 2 else image
    resized = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(planes[:, :, c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(planes.shape[2])
    ]
    out = np.stack(resized, axis=2)
    # Bilinear weights are convex; clipping only removes float rounding beyond the input range.
    out = np.clip(out, planes.min(), planes.max()).astype(image.dtype)
    return out[:, :, 0] if image.ndim == 2 else out


def _resize_stack(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = np.empty((len(images), *size, *images.shape[3:]), dtype=images.dtype)
    for i, image in enumerate(images):
        out[i] = _resize_one(image, size)
    return out


def _as_stack(images: np.ndarray, name: str) -> np.ndarray:
    """Check ``(N, H, W)`` / ``(N, H, W, C)`` and return ``(N, H, W)`` or ``(N, H, W, 3)``."""
    if images.ndim == 4 and images.shape[3] == 1:
        return images[:, :, :, 0]
    if images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3):
        return images
    raise InputError(
        f"`{name}` must have shape (N, H, W) or (N, H, W, C) with C 1 or 3; "
        f"got {_shape_text(images.shape)}."
    )


def conform_images(
    images: np.ndarray,
    *,
    image_shape: tuple[int, int, int],
    resize: bool = False,
    grayscale: bool = False,
    source: str = "images",
) -> np.ndarray:
    """Make images fit a model's ``(C, H, W)``.

    A grayscale image given to a 3-channel model has its channel replicated (no flag needed:
    nothing is lost). Colour given to a 1-channel model needs ``grayscale=True`` (ITU-R 601-2
    luma, as Pillow's ``"L"``); another height or width needs ``resize=True`` (bilinear, Pillow).

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` with C 1 or 3; uint8 or float (other integer
            dtypes with values in 0..255 are cast to uint8).
        image_shape: The model's ``(C, H, W)``, e.g. ``(1, 28, 28)``.
        resize: Resize images of another height/width instead of raising.
        grayscale: Convert colour images to grayscale instead of raising.
        source: What to call the images in error messages (a file name or option).

    Returns:
        ``(N, H, W)`` when the model has 1 channel, ``(N, H, W, 3)`` when it has 3, in the
        input's dtype (uint8 stays uint8).

    Raises:
        InputError: Shapes or dtypes that do not fit and no flag allows fixing.
    """
    channels, height, width = (int(v) for v in image_shape)
    if channels not in (1, 3):
        raise InputError(f"`image_shape` must have 1 or 3 channels; got {tuple(image_shape)}.")
    images = np.asarray(images)
    _check_dtype(images, source)
    if images.dtype != np.uint8 and np.issubdtype(images.dtype, np.integer):
        images = check_pixel_values(images, name=source)
    images = _as_stack(images, source)
    if images.ndim == 4 and channels == 1:
        if not grayscale:
            raise InputError(
                f"{source} has colour (3-channel) images but the model expects 1 channel; "
                "pass --grayscale."
            )
        images = _rgb_to_gray(images)
    elif images.ndim == 3 and channels == 3:
        images = np.repeat(images[:, :, :, None], 3, axis=3)
    if images.shape[1:3] != (height, width):
        if not resize:
            raise InputError(
                f"{source} is {images.shape[1]}x{images.shape[2]} but the model expects "
                f"{height}x{width}; pass --resize."
            )
        images = _resize_stack(images, (height, width))
    return images


@dataclass
class ImageBatch:
    """A batch of images streamed for scoring.

    Attributes:
        images: ``(B, H, W)`` (grayscale) or ``(B, H, W, 3)``; uint8, or the array file's dtype.
        sources: The file each image came from, as a path string, ``(B,)``.
        indices: The image's index within its source (0 for an image file, the row for
            arrays), ``(B,)``.
    """

    images: np.ndarray
    sources: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)


class ImageStream:
    """Stream images from files, folders and array files in batches of bounded memory.

    Each input may be an image file, a folder (its image files, recursively), a ``.npy``
    file (memory-mapped, sliced per batch), a ``.npz`` file (key ``x``, or its only array;
    loaded whole), or an IDX file (``.idx``, ``-ubyte``, optionally ``.gz``; raw files are
    memory-mapped). Arrays may be ``(N, H, W)``, ``(N, H, W, C)`` or one image ``(H, W)`` /
    ``(H, W, C)`` (a rank-3 array whose last axis is 1 or 3 is read as one image).

    ``channels`` and ``size`` apply to arrays as to image files. A batch is cut short where
    the image shape or dtype changes between sources, so that each batch stacks. Float
    pixel values are not checked here: :func:`to_model_layout` checks them per batch.

    Attributes:
        skipped: ``(path, reason)`` of each bad file skipped in the last iteration (only
            with ``skip_bad=True``).
    """

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike],
        *,
        batch_size: int,
        channels: int | None = None,
        size: tuple[int, int] | None = None,
        skip_bad: bool = False,
    ) -> None:
        if isinstance(inputs, str | os.PathLike):
            inputs = [inputs]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise InputError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
        if batch_size < 1:
            raise InputError(f"`batch_size` must be a positive integer; got {batch_size}.")
        _check_channels(channels)
        self.inputs = [Path(p) for p in inputs]
        if not self.inputs:
            raise InputError("No inputs given: pass at least one image file, folder or array file.")
        for path in self.inputs:
            if not path.exists():
                raise InputError(f"Input {path} does not exist.")
        self.batch_size = int(batch_size)
        self.channels = channels
        self.size = _check_size(size)
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[ImageBatch]:
        self.skipped = []
        parts: list[np.ndarray] = []
        sources: list[str] = []
        indices: list[int] = []
        key: tuple | None = None

        def flush() -> ImageBatch:
            batch = ImageBatch(
                np.concatenate(parts) if len(parts) > 1 else parts[0], sources[:], indices[:]
            )
            parts.clear()
            sources.clear()
            indices.clear()
            return batch

        for chunk, source, first in self._chunks():
            chunk_key = (chunk.shape[1:], chunk.dtype)
            if parts and chunk_key != key:
                yield flush()
            key = chunk_key
            pos = 0
            while pos < len(chunk):
                take = min(self.batch_size - len(sources), len(chunk) - pos)
                parts.append(chunk[pos : pos + take])
                sources.extend([source] * take)
                indices.extend(range(first + pos, first + pos + take))
                pos += take
                if len(sources) == self.batch_size:
                    yield flush()
        if parts:
            yield flush()

    def _bad(self, path: Path, error: InputError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.append((str(path), str(error)))

    def _chunks(self) -> Iterator[tuple[np.ndarray, str, int]]:
        """Yield ``(images (k, H, W[, 3]), source, index of the first)`` with k <= batch_size."""
        for path in self.inputs:
            if path.is_dir():
                try:
                    files = list_image_files(path)
                except InputError as error:
                    self._bad(path, error)
                    continue
                for file in files:
                    yield from self._image_file(file)
            elif path.name.lower().endswith(IMAGE_SUFFIXES):
                yield from self._image_file(path)
            else:
                yield from self._array_file(path)

    def _image_file(self, path: Path) -> Iterator[tuple[np.ndarray, str, int]]:
        try:
            image = read_image_file(path, channels=self.channels, size=self.size)
        except InputError as error:
            self._bad(path, error)
            return
        yield image[None], str(path), 0

    def _array_file(self, path: Path) -> Iterator[tuple[np.ndarray, str, int]]:
        try:
            array = _open_array(path)
        except InputError as error:
            self._bad(path, error)
            return
        for start in range(0, len(array), self.batch_size):
            # np.array copies the slice out of the memory map.
            chunk = np.array(array[start : start + self.batch_size])
            try:
                chunk = self._adapt(chunk, path)
            except InputError as error:
                self._bad(path, error)
                return
            yield chunk, str(path), start

    def _adapt(self, chunk: np.ndarray, path: Path) -> np.ndarray:
        """Apply ``channels`` and ``size`` to a chunk of an array file."""
        if chunk.dtype != np.uint8 and np.issubdtype(chunk.dtype, np.integer):
            chunk = check_pixel_values(chunk, name=str(path))
        if self.channels == 1 and chunk.ndim == 4:
            chunk = _rgb_to_gray(chunk)
        elif self.channels == 3 and chunk.ndim == 3:
            chunk = np.repeat(chunk[:, :, :, None], 3, axis=3)
        if self.size is not None and chunk.shape[1:3] != self.size:
            chunk = _resize_stack(chunk, self.size)
        return chunk


def _open_array(path: Path) -> np.ndarray:
    """Open an array file as an image stack ``(N, H, W)`` or ``(N, H, W, 3)``, lazily if possible."""
    name = path.name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    if name.endswith(".npy"):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path} is not a readable .npy array file: {exc}") from None
    elif name.endswith(".npz"):
        array = _load_npz_images(path)
    elif _IDX_NAME.search(stem):
        array = read_idx(path, mmap=True)
    else:
        raise InputError(
            f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}), .npy, .npz or IDX file."
        )
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path} does not hold an array.")
    _check_dtype(array, str(path))
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3)):
        array = array[None]  # one image, (H, W) or (H, W, C)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3)):
        raise InputError(
            f"{path} holds an array of shape {_shape_text(array.shape)}; expected images "
            "(N, H, W), (N, H, W, C) with C 1 or 3, or one image (H, W) / (H, W, C)."
        )
    return array[:, :, :, 0] if array.ndim == 4 and array.shape[3] == 1 else array


def _load_npz_images(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if "x" in keys:
                key = "x"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise InputError(
                    f"{path} holds arrays {', '.join(keys) or '(none)'}; expected one array "
                    "or one named 'x'."
                )
            return archive[key]
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable .npz array file: {exc}") from None


def iter_image_batches(
    inputs: Sequence[str | os.PathLike],
    *,
    batch_size: int,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    skip_bad: bool = False,
) -> ImageStream:
    """Stream inputs for scoring in batches; see :class:`ImageStream`.

    Args:
        inputs: Image files, folders, ``.npy``/``.npz`` and IDX files.
        batch_size: The most images per batch.
        channels: 1 or 3 to convert every image, None to keep each source's own.
        size: ``(H, W)`` to resize every image to (bilinear), None to keep sizes.
        skip_bad: Skip unreadable files, recording them in ``.skipped``, instead of raising.

    Returns:
        An iterable of :class:`ImageBatch` with a ``skipped`` list of ``(path, reason)``.

    Raises:
        InputError: An input does not exist, or (without ``skip_bad``) a file is unreadable.
    """
    return ImageStream(
        inputs, batch_size=batch_size, channels=channels, size=size, skip_bad=skip_bad
    )
