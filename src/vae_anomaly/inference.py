"""Batch scoring of files: stream images from files, folders and arrays -> one row per image.

Memory stays bounded by the batch size: :func:`iter_score_rows` reads a batch, makes it fit the
model (:func:`images.conform_images`), scores it and yields its rows before reading the next.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detector import VAEAnomalyDetector
from .errors import InputError
from .images import ImageBatch, ImageStream, check_pixel_values, conform_images

#: Columns of a score file, in order.
ROW_COLUMNS = ("source", "index", "score", "threshold", "is_anomaly")


@dataclass
class ScoredBatch:
    """The rows of one scored batch, and the images and error maps when asked for.

    Attributes:
        sources: The file each image came from, ``(B,)``.
        indices: The image's index within its source (0 for an image file), ``(B,)``.
        scores: ``(B,)`` float32 anomaly scores; higher = more anomalous.
        is_anomaly: ``(B,)`` bool, score >= threshold.
        threshold: The detector's threshold.
        images: ``(B, H, W)`` or ``(B, H, W, 3)`` as the model saw them (after resize/grayscale).
        error_maps: ``(B, H, W)`` per-pixel absolute error, or None.
    """

    sources: list[str]
    indices: list[int]
    scores: np.ndarray
    is_anomaly: np.ndarray
    threshold: float
    images: np.ndarray
    error_maps: np.ndarray | None = None

    def rows(self) -> list[dict]:
        """One dict per image with the keys of :data:`ROW_COLUMNS`."""
        return [
            {
                "source": source,
                "index": int(index),
                "score": float(score),
                "threshold": float(self.threshold),
                "is_anomaly": int(flag),
            }
            for source, index, score, flag in zip(
                self.sources, self.indices, self.scores, self.is_anomaly, strict=True
            )
        ]


def _conform(batch: ImageBatch, detector: VAEAnomalyDetector, resize: bool, grayscale: bool):
    images = conform_images(
        batch.images,
        image_shape=detector.image_shape_,
        resize=resize,
        grayscale=grayscale,
        source=batch.sources[0],
    )
    return check_pixel_values(images, name=batch.sources[0])


def _conform_per_source(
    batch: ImageBatch,
    detector: VAEAnomalyDetector,
    resize: bool,
    grayscale: bool,
    skipped: list[tuple[str, str]] | None,
) -> ImageBatch | None:
    """Conform a batch source by source, so that the error names the file at fault; with
    ``skipped`` given, drop the sources that do not fit and record why."""
    parts, sources, indices = [], [], []
    start = 0
    while start < len(batch):
        stop = start
        while stop < len(batch) and batch.sources[stop] == batch.sources[start]:
            stop += 1
        piece = ImageBatch(
            batch.images[start:stop], batch.sources[start:stop], batch.indices[start:stop]
        )
        try:
            parts.append(_conform(piece, detector, resize, grayscale))
        except InputError as error:
            if skipped is None:
                raise
            skipped.append((piece.sources[0], str(error)))
        else:
            sources += piece.sources
            indices += piece.indices
        start = stop
    if not parts:
        return None
    return ImageBatch(np.concatenate(parts), sources, indices)


def iter_scored_batches(
    detector: VAEAnomalyDetector,
    inputs: Sequence[str | os.PathLike],
    *,
    batch_size: int = 256,
    resize: bool = False,
    grayscale: bool = False,
    skip_bad: bool = False,
    with_error_maps: bool = False,
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[ScoredBatch]:
    """Score image files, folders (recursively), ``.npy``/``.npz`` and IDX files in batches.

    Args:
        detector: A fitted or loaded detector.
        inputs: Paths to score.
        batch_size: The most images held in memory at once.
        resize: Resize images of another height/width to the model's (else an error).
        grayscale: Convert colour images for a grayscale model (else an error).
        skip_bad: Skip unreadable files and images that do not fit, instead of raising; each is
            appended to ``skipped`` as ``(path, reason)``.
        with_error_maps: Also compute the per-pixel error maps.
        skipped: A list receiving the skipped files (required with ``skip_bad``).

    Yields:
        :class:`ScoredBatch` es, in input order.

    Raises:
        InputError: A missing input, or (without ``skip_bad``) a bad file, naming it.
    """
    detector._check_fitted()
    if skip_bad and skipped is None:
        skipped = []
    stream = ImageStream(inputs, batch_size=batch_size, skip_bad=skip_bad)
    seen = 0
    for batch in stream:
        # The stream records unreadable files as it goes; pass them on in order.
        skipped_now = stream.skipped[seen:]
        seen = len(stream.skipped)
        if skipped is not None:
            skipped.extend(skipped_now)
        try:
            images = _conform(batch, detector, resize, grayscale)
        except InputError:
            conformed = _conform_per_source(
                batch, detector, resize, grayscale, skipped if skip_bad else None
            )
            if conformed is None:
                continue
            batch, images = conformed, conformed.images
        scores = detector.score_samples(images)
        maps = detector.error_maps(images) if with_error_maps else None
        yield ScoredBatch(
            batch.sources,
            batch.indices,
            scores,
            scores >= detector.threshold_,
            detector.threshold_,
            images,
            maps,
        )
    if skipped is not None:
        skipped.extend(stream.skipped[seen:])


def format_rows(rows: list[dict], fmt: str, *, header: bool) -> str:
    """Rows as CSV (with a header line when ``header``) or JSON lines."""
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ROW_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow(
            {**row, "score": f"{row['score']:.8g}", "threshold": f"{row['threshold']:.8g}"}
        )
    return out.getvalue()


def error_map_name(source: str, index: int, *, is_array: bool) -> str:
    """A file name for the error map of one image: its path with separators as ``__``, plus
    the index for images from an array file, e.g. ``shots__a.png``, ``shots__b.jpg.png``, ``x.npz-3.png``."""
    parts = [p for p in Path(source).parts if p not in ("/", "\\", ".", "..")]
    stem = "__".join(parts)
    stem = re.sub(r"[^\w.\-]", "_", stem)
    if is_array:
        return f"{stem}-{index}.png"
    return stem if stem.lower().endswith(".png") else f"{stem}.png"


def error_map_image(image: np.ndarray, error_map: np.ndarray, *, scale: int = 4) -> np.ndarray:
    """The image beside its error map as a heat map (black = no error, bright = the image's
    largest error), each enlarged ``scale`` times, as uint8 RGB ``(H * scale, 2 * W * scale, 3)``.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1].
        error_map: ``(H, W)`` absolute reconstruction error.
    """
    from matplotlib import colormaps

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    peak = float(error_map.max())
    normalised = error_map / peak if peak > 0 else np.zeros_like(error_map)
    heat = (colormaps["inferno"](normalised)[:, :, :3] * 255).astype(np.uint8)
    both = np.concatenate([pixels, heat], axis=1)
    return np.repeat(np.repeat(both, scale, axis=0), scale, axis=1)


def save_error_maps(batch: ScoredBatch, folder: Path, used_names: set[str]) -> None:
    """Write one PNG per image of ``batch`` into ``folder`` (see :func:`error_map_image`).

    ``used_names`` holds the names written so far by this scoring run (the caller keeps it across
    batches): two sources that flatten to the same name (``a/b.png`` and ``a__b.png``) get ``-2``,
    ``-3``... instead of the second replacing the first.
    """
    from PIL import Image

    from .files import atomic_open

    assert batch.error_maps is not None
    for i, (source, index) in enumerate(zip(batch.sources, batch.indices, strict=True)):
        is_array = not source.lower().endswith((".png", ".jpg", ".jpeg", ".bmp"))
        name = error_map_name(source, index, is_array=is_array)
        stem, copy = name[: -len(".png")], 2
        while name in used_names:
            name, copy = f"{stem}-{copy}.png", copy + 1
        used_names.add(name)
        with atomic_open(folder / name, "wb") as handle:
            Image.fromarray(error_map_image(batch.images[i], batch.error_maps[i])).save(
                handle, format="PNG"
            )
