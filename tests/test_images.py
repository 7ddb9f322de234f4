"""Tests of vae_anomaly.images: the model layout, image files, conforming and streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vae_anomaly.datasets import write_idx
from vae_anomaly.errors import InputError
from vae_anomaly.images import (
    IMAGE_SUFFIXES,
    ImageBatch,
    ImageStream,
    conform_images,
    iter_image_batches,
    list_image_files,
    read_image_file,
    to_model_layout,
)


def save(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def gray(value: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8)


# --- to_model_layout ---------------------------------------------------------------------------


def test_uint8_is_divided_by_255_exactly():
    x = np.array([[[0, 51, 255]]], dtype=np.uint8)  # (N=1, H=1, W=3)
    out = to_model_layout(x)
    assert out.shape == (1, 1, 1, 3)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out.ravel(), np.array([0.0, 0.2, 1.0], dtype=np.float32))


def test_float_passes_through_as_float32():
    x = np.array([[[0.0, 0.25], [0.5, 1.0]]])  # float64 (1, 2, 2)
    out = to_model_layout(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], np.float32([[0.0, 0.25], [0.5, 1.0]]))


def test_channels_last_becomes_channels_first():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)  # (N, H, W, C)
    out = to_model_layout(x)
    assert out.shape == (2, 3, 2, 3)
    assert out.flags.c_contiguous
    # pixel (n=1, h=0, w=2) channel 1 is x[1, 0, 2, 1] = 18 + 0 + 6 + 1 = 25
    assert out[1, 1, 0, 2] == np.float32(25) / np.float32(255)
    np.testing.assert_array_equal(out, x.transpose(0, 3, 1, 2).astype(np.float32) / 255)


def test_one_channel_last_and_integer_dtypes():
    x = np.array([[[[10], [20]]]], dtype=np.int64)  # (1, 1, 2, 1), int64 within 0..255
    out = to_model_layout(x)
    assert out.shape == (1, 1, 1, 2)
    np.testing.assert_array_equal(out, to_model_layout(x.astype(np.uint8)))


_NAN_X = np.zeros((1, 2, 2))
_NAN_X[0, 0, 0] = np.nan
_NAN_X[0, 0, 1] = np.inf
_NAN_X[0, 1, 1] = -np.inf


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((28, 28), np.uint8), r"got \(28, 28\)\. For a single image pass images\[None\]"),
        (
            np.zeros((1, 2, 3, 4, 5), np.uint8),
            r"\(N, H, W\) or \(N, H, W, C\).*got \(1, 2, 3, 4, 5\)",
        ),
        (np.zeros((2, 8, 8, 4), np.uint8), r"C 1 or 3; got \(2, 8, 8, 4\)\.$"),
        (np.zeros((2, 1, 8, 8), np.uint8), r"got \(2, 1, 8, 8\)\. It looks channels-first"),
        (np.zeros((0, 8, 8), np.uint8), r"at least one non-empty image; got shape \(0, 8, 8\)"),
        (np.zeros((1, 8, 8), bool), r"got dtype bool"),
        (np.zeros((1, 8, 8), complex), r"got dtype complex128"),
        (
            np.full((1, 2, 2), 300, np.int64),
            r"integer pixels in 0\.\.255; got values from 300 to 300",
        ),
        (np.full((1, 2, 2), -1, np.int16), r"got values from -1 to -1"),
        (np.full((1, 2, 2), 255.0), r"got values up to 255\. Divide by 255, or pass uint8"),
        (np.full((1, 2, 2), -0.5, np.float32), r"got values down to -0\.5"),
        (_NAN_X, r"got 3 NaN or infinite value\(s\)"),
    ],
)
def test_to_model_layout_rejects(images, match):
    with pytest.raises(InputError, match=match):
        to_model_layout(images)


def test_to_model_layout_names_the_argument():
    with pytest.raises(InputError, match=r"^`X` must have shape"):
        to_model_layout(np.zeros((8, 8)), name="X")


# --- read_image_file ---------------------------------------------------------------------------


def test_read_png_gray_exact(tmp_path):
    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = read_image_file(save(tmp_path / "a.png", pixels))
    assert out.dtype == np.uint8 and out.shape == (6, 8)
    np.testing.assert_array_equal(out, pixels)


def test_read_bmp_rgb_exact_and_jpeg_close(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    np.testing.assert_array_equal(read_image_file(save(tmp_path / "a.bmp", rgb)), rgb)
    jpeg = read_image_file(save(tmp_path / "a.JPG", rgb, quality=95))
    assert jpeg.shape == (4, 5, 3)
    assert np.abs(jpeg.astype(int) - rgb).max() <= 3


def test_read_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = 7  # alpha is dropped, not composited
    np.testing.assert_array_equal(
        read_image_file(save(tmp_path / "a.png", rgba)), np.broadcast_to([10, 20, 30], (2, 2, 3))
    )
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png")
    out = read_image_file(tmp_path / "p.png")
    assert out.shape == (2, 3, 3)
    assert out[0, 1].tolist() == [255, 128, 0] and out[1, 2].tolist() == [0, 0, 0]


def test_read_16_bit_is_scaled_to_8_bit(tmp_path):
    path = save(tmp_path / "deep.png", np.array([[0, 25700, 65535, 128]], dtype=np.uint16))
    assert Image.open(path).mode.startswith("I")
    # round(v * 255 / 65535): 25700 -> 100, 128 -> 0.498 -> 0
    assert read_image_file(path).tolist() == [[0, 100, 255, 0]]


def test_read_converts_channels_and_resizes(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    path = save(tmp_path / "rgb.png", rgb)
    # ITU-R 601-2 luma as Pillow's "L": 0.299 R + 0.587 G + 0.114 B
    assert read_image_file(path, channels=1).tolist() == [[76, 150, 29, 255]]
    gray_path = save(tmp_path / "g.png", gray(9, (2, 3)))
    out = read_image_file(gray_path, channels=3)
    assert out.shape == (2, 3, 3) and (out == 9).all()
    half = np.zeros((4, 4), dtype=np.uint8)
    half[:, 2:] = 200
    resized = read_image_file(save(tmp_path / "half.png", half), size=(2, 2))
    # bilinear (triangle filter, support 2 input pixels): (200 * 0.25) / 1.75 = 28.57 -> 29
    assert resized.tolist() == [[29, 171], [29, 171]]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not an image", r"bad\.png is not a readable PNG/JPEG/BMP image: "),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, r"bad\.png is not a readable PNG/JPEG/BMP image"),
    ],
)
def test_read_corrupt_file(tmp_path, content, match):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_image_file(tmp_path / "bad.png")


def test_read_truncated_png(tmp_path):
    path = save(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"t\.png is not a readable PNG/JPEG/BMP image"):
        read_image_file(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 2}, r"`channels` must be 1, 3 or None; got 2"),
        ({"size": (0, 4)}, r"`size` must be two positive integers \(height, width\); got \(0, 4\)"),
        ({"size": 5}, r"`size` must be \(height, width\); got 5"),
    ],
)
def test_read_bad_arguments(tmp_path, kwargs, match):
    path = save(tmp_path / "a.png", gray(1))
    with pytest.raises(InputError, match=match):
        read_image_file(path, **kwargs)


def test_read_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.png does not exist"):
        read_image_file(tmp_path / "nope.png")


# --- list_image_files --------------------------------------------------------------------------


def test_list_image_files_recursive_sorted_case_insensitive(tmp_path):
    for name in ["b.png", "a.JPEG", "sub/c.Bmp", "sub/deep/d.jpg", ".hidden.png", ".git/e.png"]:
        save(tmp_path / name, gray(1))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub" / "x.npy").write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert found == ["a.JPEG", "b.png", "sub/c.Bmp", "sub/deep/d.jpg"]
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp")


def test_list_image_files_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"empty holds no image files \(expected \.png, \.jpg"):
        list_image_files(tmp_path / "empty")
    with pytest.raises(InputError, match=r"missing does not exist"):
        list_image_files(tmp_path / "missing")


# --- conform_images ----------------------------------------------------------------------------


def test_conform_passes_matching_images_through():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    out = conform_images(x, image_shape=(1, 4, 4), resize=False, grayscale=False, source="x")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, x)
    one_channel = conform_images(x[..., None], image_shape=(1, 4, 4), source="x")
    np.testing.assert_array_equal(one_channel, x)


def test_conform_resize():
    x = np.zeros((1, 4, 4), dtype=np.uint8)
    x[:, :, 2:] = 200
    with pytest.raises(
        InputError, match=r"^scan\.npy is 4x4 but the model expects 2x2; pass --resize\.$"
    ):
        conform_images(x, image_shape=(1, 2, 2), resize=False, grayscale=False, source="scan.npy")
    out = conform_images(x, image_shape=(1, 2, 2), resize=True, grayscale=False, source="x")
    assert out.dtype == np.uint8 and out.tolist() == [[[29, 171], [29, 171]]]
    as_float = conform_images(x / 255.0, image_shape=(1, 2, 2), resize=True, source="x")
    assert as_float.dtype == np.float64
    np.testing.assert_allclose(as_float[0, 0], [50 / 1.75 / 255, 300 / 1.75 / 255], rtol=1e-5)


def test_conform_grayscale():
    rgb = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]]], dtype=np.uint8)
    with pytest.raises(
        InputError,
        match=r"^photos has colour \(3-channel\) images but the model expects 1 channel; pass --grayscale\.$",
    ):
        conform_images(rgb, image_shape=(1, 1, 4), resize=False, grayscale=False, source="photos")
    out = conform_images(rgb, image_shape=(1, 1, 4), resize=False, grayscale=True, source="x")
    assert out.dtype == np.uint8 and out.tolist() == [[[76, 150, 29, 255]]]
    pillow = np.asarray(Image.fromarray(rgb[0]).convert("L"))
    np.testing.assert_array_equal(out[0], pillow)
    as_float = conform_images(rgb / 255.0, image_shape=(1, 1, 4), grayscale=True, source="x")
    np.testing.assert_allclose(as_float[0, 0], [0.299, 0.587, 0.114, 1.0])


def test_conform_replicates_gray_for_colour_model_and_casts_integers():
    x = np.array([[[1, 2], [3, 4]]], dtype=np.int32)
    out = conform_images(x, image_shape=(3, 2, 2), source="x")
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, 1, 0].tolist() == [3, 3, 3]


@pytest.mark.parametrize(
    ("images", "image_shape", "match"),
    [
        (np.zeros((1, 4, 4, 2), np.uint8), (1, 4, 4), r"got \(1, 4, 4, 2\)"),
        (np.zeros((4, 4), np.uint8), (1, 4, 4), r"got \(4, 4\)"),
        (np.zeros((1, 4, 4), np.uint8), (2, 4, 4), r"`image_shape` must have 1 or 3 channels"),
        (np.full((1, 4, 4), 256, np.int64), (1, 4, 4), r"0\.\.255; got values from 256"),
    ],
)
def test_conform_rejects(images, image_shape, match):
    with pytest.raises(InputError, match=match):
        conform_images(images, image_shape=image_shape, source="x")


# --- streaming ---------------------------------------------------------------------------------


def test_stream_folder_in_several_batches_keeps_order(tmp_path):
    names = ["a0.png", "a1.png", "b/a2.png", "b/a3.bmp", "b/c/a4.png", "z5.png", "z6.png"]
    for i, name in enumerate(names):
        save(tmp_path / "imgs" / name, gray(10 * i))
    batches = list(iter_image_batches([tmp_path / "imgs"], batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(isinstance(b, ImageBatch) and b.images.shape[1:] == (8, 8) for b in batches)
    images = np.concatenate([b.images for b in batches])
    assert images[:, 0, 0].tolist() == [0, 10, 20, 30, 40, 50, 60]
    sources = [s for b in batches for s in b.sources]
    assert sources == [str(tmp_path / "imgs" / n) for n in names]
    assert [i for b in batches for i in b.indices] == [0] * 7


def test_stream_arrays_and_files_fill_batches_across_sources(tmp_path):
    npy = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    np.save(tmp_path / "a.npy", npy)
    save(tmp_path / "p.png", gray(77))
    np.savez(tmp_path / "b.npz", other=np.zeros(3), x=np.full((3, 8, 8), 5, np.uint8))
    inputs = [tmp_path / "a.npy", tmp_path / "p.png", tmp_path / "b.npz"]
    batches = list(iter_image_batches(inputs, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 1]
    assert batches[1].sources == [str(inputs[0]), str(inputs[1]), str(inputs[2]), str(inputs[2])]
    assert batches[1].indices == [4, 0, 0, 1]
    assert batches[2].indices == [2]
    np.testing.assert_array_equal(batches[0].images, npy[:4])
    assert batches[1].images[1, 0, 0] == 77 and batches[2].images[0, 0, 0] == 5


def test_stream_memory_maps_npy(tmp_path, monkeypatch):
    np.save(tmp_path / "a.npy", np.zeros((10, 4, 4), np.uint8))
    modes = []
    real_load = np.load

    def spy(*args, **kwargs):
        modes.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    batches = list(ImageStream([tmp_path / "a.npy"], batch_size=4))
    assert modes == ["r"]
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [b.indices for b in batches][2] == [8, 9]
    assert type(batches[0].images) is np.ndarray  # copied out of the memory map


def test_stream_cuts_batches_where_the_shape_changes_unless_resized(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 8, 8), np.uint8))
    save(tmp_path / "small.png", gray(1, (6, 6)))
    inputs = [tmp_path / "a.npy", tmp_path / "small.png"]
    assert [len(b) for b in iter_image_batches(inputs, batch_size=10)] == [3, 1]
    resized = list(iter_image_batches(inputs, batch_size=10, size=(8, 8)))
    assert [b.images.shape for b in resized] == [(4, 8, 8)]


def test_stream_single_images_channels_and_idx(tmp_path):
    np.save(tmp_path / "one.npy", np.full((8, 8), 3, np.uint8))
    np.save(tmp_path / "rgb.npy", np.full((8, 8, 3), 4, np.uint8))
    write_idx(tmp_path / "imgs-idx3-ubyte", np.full((2, 8, 8), 6, np.uint8))
    write_idx(tmp_path / "more.idx.gz", np.full((2, 8, 8), 7, np.uint8))
    inputs = [tmp_path / n for n in ["one.npy", "rgb.npy", "imgs-idx3-ubyte", "more.idx.gz"]]
    batches = list(iter_image_batches(inputs, batch_size=8, channels=3))
    assert [b.images.shape for b in batches] == [(6, 8, 8, 3)]
    assert batches[0].images[:, 0, 0, 0].tolist() == [3, 4, 6, 6, 7, 7]
    assert batches[0].indices == [0, 0, 0, 1, 0, 1]
    as_gray = list(iter_image_batches(inputs[1:2], batch_size=8, channels=1))
    assert as_gray[0].images.shape == (1, 8, 8) and as_gray[0].images[0, 0, 0] == 4


def test_stream_skips_bad_files_and_records_them(tmp_path):
    for i in range(2):
        save(tmp_path / "imgs" / f"ok{i}.png", gray(i))
    (tmp_path / "imgs" / "bad.png").write_bytes(b"plain text, not a PNG")
    labels = tmp_path / "labels-idx1-ubyte"
    write_idx(labels, np.arange(5, dtype=np.uint8))
    stream = iter_image_batches([tmp_path / "imgs", labels], batch_size=8, skip_bad=True)
    batches = list(stream)
    assert [len(b) for b in batches] == [2]
    assert [path for path, _ in stream.skipped] == [str(tmp_path / "imgs" / "bad.png"), str(labels)]
    assert "is not a readable PNG/JPEG/BMP image" in stream.skipped[0][1]
    assert "holds an array of shape (5,)" in stream.skipped[1][1]
    assert [len(b) for b in stream] == [2]  # iterating again gives the same, skipped reset
    assert len(stream.skipped) == 2
    strict = iter_image_batches([tmp_path / "imgs"], batch_size=8, skip_bad=False)
    with pytest.raises(InputError, match=r"bad\.png is not a readable PNG/JPEG/BMP image"):
        list(strict)


@pytest.mark.parametrize(
    ("name", "write", "match"),
    [
        (
            "a.txt",
            lambda p: p.write_text("x"),
            r"a\.txt is not an image \(\.png, .*\), \.npy, \.npz or IDX file",
        ),
        (
            "a.npy",
            lambda p: p.write_bytes(b"garbage"),
            r"a\.npy is not a readable \.npy array file",
        ),
        (
            "a.npz",
            lambda p: p.write_bytes(b"garbage"),
            r"a\.npz is not a readable \.npz array file",
        ),
        (
            "a.npz",
            lambda p: np.savez(p, a=np.zeros((1, 2, 2)), b=np.zeros((1, 2, 2))),
            r"a\.npz holds arrays a, b; expected one array or one named 'x'",
        ),
        (
            "a.npy",
            lambda p: np.save(p, np.zeros((2, 3, 4, 5))),
            r"holds an array of shape \(2, 3, 4, 5\)",
        ),
        ("a.npy", lambda p: np.save(p, np.zeros((2, 3), bool)), r"got dtype bool"),
        (
            "a-ubyte",
            lambda p: p.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09ab"),
            r"a-ubyte is truncated",
        ),
    ],
)
def test_stream_bad_files(tmp_path, name, write, match):
    path = tmp_path / name
    write(path)
    with pytest.raises(InputError, match=match):
        list(iter_image_batches([path], batch_size=2))


@pytest.mark.parametrize(
    ("inputs", "kwargs", "match"),
    [
        (["missing.png"], {}, r"Input .*missing\.png does not exist"),
        ([], {}, r"No inputs given"),
        (["."], {"batch_size": 0}, r"`batch_size` must be a positive integer; got 0"),
        (["."], {"channels": 4}, r"`channels` must be 1, 3 or None; got 4"),
    ],
)
def test_stream_argument_errors(tmp_path, inputs, kwargs, match):
    paths = [tmp_path / p for p in inputs]
    with pytest.raises(InputError, match=match):
        ImageStream(paths, **{"batch_size": 2, **kwargs})
