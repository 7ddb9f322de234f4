"""IDX files (the MNIST format): read with checks of the magic number, dimensions and size; write.

The lowest data module: ``images`` (IDX inputs to score) and ``datasets`` (Fashion-MNIST, MNIST)
both read IDX files through it.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from vae_anomaly.errors import InputError
from vae_anomaly.files import atomic_open

# ---------------------------------------------------------------------------------------------
# IDX files (http://yann.lecun.com/exdb/mnist/): 2 zero bytes, a type code, a dimension count,
# then one big-endian uint32 per dimension and the big-endian data in C order.

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {(dtype.kind, dtype.itemsize): code for code, dtype in _IDX_TYPES.items()}
_IDX_MAX_DIMS = 4


def _type_list() -> str:
    return ", ".join(f"0x{code:02X} ({dtype.name})" for code, dtype in _IDX_TYPES.items())


def _parse_idx_header(head: bytes, path: Path, total: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse the header from the first bytes of an IDX file of ``total`` bytes."""
    if total < 4:
        raise InputError(
            f"{path} is not an IDX file: it has {total} bytes, fewer than the 4-byte magic number."
        )
    if head[0] != 0 or head[1] != 0:
        raise InputError(
            f"{path} is not an IDX file: its magic number must start with two zero bytes; "
            f"found {head[:4].hex(' ')}."
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_TYPES:
        raise InputError(f"{path} has IDX type code 0x{code:02X}; expected one of {_type_list()}.")
    if not 1 <= ndim <= _IDX_MAX_DIMS:
        raise InputError(
            f"{path} has {ndim} dimensions in its IDX header; expected 1 to {_IDX_MAX_DIMS}."
        )
    header_len = 4 + 4 * ndim
    if total < header_len:
        raise InputError(
            f"{path} is truncated: expected a {header_len}-byte IDX header for {ndim} "
            f"dimensions, found {total} bytes."
        )
    dims = struct.unpack(f">{ndim}I", head[4:header_len])
    return _IDX_TYPES[code], dims, header_len


def _check_idx_size(
    path: Path, dtype: np.dtype, dims: tuple[int, ...], header_len: int, total: int
) -> None:
    expected = math.prod(dims) * dtype.itemsize
    found = total - header_len
    if found != expected:
        what = "is truncated" if found < expected else f"has {found - expected} extra bytes"
        shape = "x".join(str(d) for d in dims)
        raise InputError(
            f"{path} {what}: expected {expected} bytes of data for {shape} {dtype.name}, "
            f"found {found}."
        )


def read_idx(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (recognised by its magic bytes, not its name).

    Args:
        path: The IDX file, e.g. ``train-images-idx3-ubyte.gz``.
        mmap: Memory-map an uncompressed file read-only instead of reading it (the array
            then keeps the file's big-endian dtype); a gzip file is always read whole.

    Returns:
        The array with the header's dimensions, e.g. uint8 ``(60000, 28, 28)`` for images or
        ``(60000,)`` for labels, in native byte order unless memory-mapped.

    Raises:
        InputError: The file does not exist, is corrupt gzip, has a bad magic number, type
            code or dimension count, or its size does not match its header.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"IDX file {path} does not exist.")
    with open(path, "rb") as handle:
        head = handle.read(4 + 4 * _IDX_MAX_DIMS)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path} is not a valid gzip file: {exc}") from None
        dtype, dims, header_len = _parse_idx_header(data[: len(head)], path, len(data))
        _check_idx_size(path, dtype, dims, header_len, len(data))
        array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header_len)
        return array.reshape(dims).astype(dtype.newbyteorder("="))
    total = path.stat().st_size
    dtype, dims, header_len = _parse_idx_header(head, path, total)
    _check_idx_size(path, dtype, dims, header_len, total)
    if mmap and math.prod(dims) > 0:
        return np.memmap(path, dtype=dtype, mode="r", offset=header_len, shape=dims)
    with open(path, "rb") as handle:
        handle.seek(header_len)
        array = np.fromfile(handle, dtype=dtype, count=math.prod(dims))
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file, gzip-compressed if ``path`` ends with ``.gz``, atomically.

    Args:
        path: The file to write.
        array: 1 to 4 dimensions of uint8, int8, int16, int32, float32 or float64, e.g.
            uint8 ``(N, 28, 28)`` images or ``(N,)`` labels.

    Raises:
        InputError: A dtype or rank that IDX (as read here) cannot hold.
    """
    array = np.asarray(array)
    code = _IDX_CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.dtype == np.bool_:
        raise InputError(
            f"IDX cannot hold dtype {array.dtype}; use one of "
            f"{', '.join(d.name for d in _IDX_TYPES.values())} (for {path})."
        )
    if not 1 <= array.ndim <= _IDX_MAX_DIMS:
        raise InputError(
            f"IDX arrays here have 1 to {_IDX_MAX_DIMS} dimensions; got shape {array.shape} "
            f"(for {path})."
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        if path.name.lower().endswith(".gz"):
            # mtime=0 and the final name keep the bytes reproducible.
            with gzip.GzipFile(
                filename=path.name, mode="wb", fileobj=handle, mtime=0, compresslevel=6
            ) as gz:
                gz.write(header)
                gz.write(data)
        else:
            handle.write(header)
            handle.write(data)
