"""The run's figures: each a function of plain arrays returning a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure()`` (Agg canvas, no pyplot state), so they are
safe in threads and tests and never open a window. Save one with ``fig.savefig(path, dpi=...)``.
Images are ``(N, H, W)`` or ``(N, H, W, C)`` floats in [0, 1] (channels last) unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

#: The seed's colour of each threshold line.
SEED_THRESHOLD_COLOURS = {
    "threshold5": "red",
    "threshold4": "blue",
    "threshold2": "cyan",
    "threshold3": "magenta",
    "threshold1": "green",
}
#: Rules without a seed name get these colours, in order.
_OTHER_COLOURS = ("tab:orange", "tab:brown", "tab:olive", "tab:gray", "tab:purple")
NORMAL_COLOUR, ANOMALY_COLOUR = "tab:blue", "tab:orange"


def threshold_colours(seed_names: Mapping[str, str | None]) -> dict[str, str]:
    """Colour per rule: the seed's colour for threshold1..5, then distinct others."""
    others = iter(_OTHER_COLOURS * 4)
    return {
        rule: SEED_THRESHOLD_COLOURS.get(seed or "") or next(others)
        for rule, seed in seed_names.items()
    }


def _image(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image ready for imshow: ``(H, W)`` with a gray colormap or ``(H, W, 3)``."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # (C, H, W) -> (H, W, C)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return np.clip(img, 0, 1), ("gray" if img.ndim == 2 else None)


def _mosaic(images: np.ndarray, gap: int = 1) -> np.ndarray:
    """Images side by side in one row, separated by ``gap`` white pixels."""
    tiles = [_image(im)[0] for im in images]
    h = tiles[0].shape[0]
    spacer = np.ones((h, gap, *tiles[0].shape[2:]), np.float32)
    parts = []
    for tile in tiles:
        parts += [tile, spacer]
    return np.concatenate(parts[:-1], axis=1)


def loss_curves(
    train_loss: Sequence[float], valid_loss: Sequence[float], best_epoch: int | None
) -> Figure:
    """Training and validation loss per epoch, with the kept (best validation) epoch marked."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = np.arange(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, label="training (normal train images)", color="tab:blue")
    if len(valid_loss):
        ax.plot(
            epochs[: len(valid_loss)],
            valid_loss,
            label="validation (normal valid images)",
            color="tab:orange",
        )
    if best_epoch:
        ax.axvline(
            best_epoch,
            color="gray",
            linestyle="--",
            label=f"best epoch {best_epoch} (weights kept)",
        )
        if len(valid_loss) >= best_epoch:
            ax.plot([best_epoch], [valid_loss[best_epoch - 1]], "o", color="tab:orange")
    ax.set(
        xlabel="epoch",
        ylabel="loss (binary cross-entropy per pixel)",
        title="Training and validation loss",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, title: str) -> Figure:
    """Originals (top row) and their reconstructions (bottom row), side by side, up to 30 images."""
    n = min(30, len(originals))
    fig = Figure(figsize=(15, 1.55), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, images, label in (
        (axes[0], originals, "original"),
        (axes[1], reconstructions, "reconstruction"),
    ):
        mosaic = _mosaic(images[:n])
        ax.imshow(
            mosaic,
            cmap="gray" if mosaic.ndim == 2 else None,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{title}: first {n} images", fontsize=11)
    return fig


def pixel_plots(
    normal: np.ndarray,
    normal_reconstruction: np.ndarray,
    abnormal: np.ndarray,
    abnormal_reconstruction: np.ndarray,
) -> Figure:
    """The seed's 1-D plots: every pixel of an image (red) and its reconstruction (green), the error
    between them filled; the first normal and the first abnormal test image."""
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, x, r, name in (
        (axes[0], normal, normal_reconstruction, "first normal test image"),
        (axes[1], abnormal, abnormal_reconstruction, "first abnormal test image"),
    ):
        x, r = np.ravel(x), np.ravel(r)
        idx = np.arange(len(x))
        ax.plot(idx, x, color="red", linewidth=0.8, label="input")
        ax.plot(idx, r, color="green", linewidth=0.8, label="reconstruction")
        ax.fill_between(idx, x, r, color="lightcoral", alpha=0.5, label="error")
        ax.set_title(f"{name}: mean absolute error {np.abs(x - r).mean():.4f}", fontsize=10)
        ax.set_ylabel("intensity [0, 1]")
        ax.legend(loc="upper right", fontsize=8)
    axes[1].set_xlabel("pixel index (row by row)")
    return fig


def score_histogram(
    groups: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    colours: Mapping[str, str],
    title: str,
    *,
    score_name: str = "score",
) -> Figure:
    """Histograms (100 bins) of the scores of each group, with a vertical line per threshold rule.

    Args:
        groups: label -> scores ``(N,)``; two groups are overlaid in two colours.
        thresholds: legend label -> threshold value.
        colours: legend label -> line colour.
    """
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    finite = [np.asarray(s, float) for s in groups.values() if len(s)]
    lo = min([s.min() for s in finite] + list(thresholds.values()))
    hi = max([s.max() for s in finite] + list(thresholds.values()))
    bins = np.linspace(lo, hi, 101) if hi > lo else 100
    fills = (NORMAL_COLOUR, ANOMALY_COLOUR) if len(groups) > 1 else ("tab:gray",)
    for (label, scores), colour in zip(groups.items(), fills, strict=False):
        ax.hist(
            scores,
            bins=bins,
            alpha=0.6 if len(groups) > 1 else 0.8,
            color=colour,
            label=f"{label} (n={len(scores)})",
        )
    for label, value in thresholds.items():
        ax.axvline(value, color=colours[label], linewidth=1.5, label=f"{label} = {value:.4f}")
    ax.set(
        xlabel=f"anomaly score ({score_name}; higher = more anomalous)",
        ylabel="images per bin",
        title=title,
    )
    ax.legend(fontsize=8, loc="upper right")
    return fig


def threshold_sweep(
    candidates: Sequence[float], accuracies: Sequence[float], chosen: float | None
) -> Figure:
    """Validation accuracy of each candidate threshold of the seed's 100-step sweep (threshold5)."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(
        candidates, accuracies, ".-", color="tab:gray", markersize=4, label="candidate thresholds"
    )
    if chosen is not None:
        i = int(np.argmin(np.abs(np.asarray(candidates) - chosen)))
        ax.plot(
            [candidates[i]],
            [accuracies[i]],
            "o",
            color="red",
            markersize=9,
            label=f"chosen (threshold5) = {candidates[i]:.4f}, accuracy {accuracies[i]:.4f}",
        )
    ax.set(
        xlabel="threshold (anomaly score)",
        ylabel="validation accuracy",
        title="Threshold sweep on validation (threshold5 = the best)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def image_grid(images: np.ndarray, rows: int, cols: int, title: str) -> Figure:
    """``rows * cols`` images in a grid, one axes each (generated images, interpolations)."""
    fig = Figure(figsize=(1.3 * cols, 1.3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, img in zip(axes.flat, images, strict=False):
        img, cmap = _image(img)
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=11)
    return fig


def roc_pr_curves(
    is_anomaly: np.ndarray,
    scores: np.ndarray,
    thresholds: Mapping[str, float],
    colours: Mapping[str, str],
) -> Figure:
    """ROC and precision-recall curves on test (positive = anomaly), each threshold rule's operating
    point marked."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    y = np.asarray(is_anomaly, bool)
    s = np.asarray(scores, float)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    ap = average_precision_score(y, s)
    fig = Figure(figsize=(12, 5), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    roc_ax.plot(fpr, tpr, color="black", label=f"ROC, AUROC = {auc(fpr, tpr):.4f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    pr_ax.plot(recall, precision, color="black", label=f"PR, AP = {ap:.4f}")
    pr_ax.axhline(y.mean(), linestyle=":", color="gray", label=f"chance = {y.mean():.3f}")
    # rules without a seed colour first, so the seed's five are drawn on top
    ordered = sorted(
        thresholds.items(), key=lambda kv: colours[kv[0]] in SEED_THRESHOLD_COLOURS.values()
    )
    for label, value in ordered:
        pred = s >= value
        tp, fp = np.sum(pred & y), np.sum(pred & ~y)
        p_fpr, p_tpr = fp / max(1, np.sum(~y)), tp / max(1, np.sum(y))
        p_prec = tp / max(1, tp + fp)
        kw = {
            "marker": "o",
            "color": colours[label],
            "markersize": 8,
            "markeredgecolor": "black",
            "linestyle": "",
        }
        roc_ax.plot([p_fpr], [p_tpr], label=label, **kw)
        pr_ax.plot([p_tpr], [p_prec], label=label, **kw)
    roc_ax.set(
        xlabel="false positive rate (normal flagged)",
        ylabel="true positive rate (anomalies caught)",
        title="ROC on test (positive = anomaly)",
    )
    pr_ax.set(
        xlabel="recall (anomalies caught)",
        ylabel="precision (flagged that are anomalies)",
        title="Precision-recall on test (positive = anomaly)",
    )
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if ax is pr_ax else "lower right")
    return fig


def confusion_heatmap(matrix: Sequence[Sequence[int]], title: str) -> Figure:
    """The confusion matrix in the seed's convention: rows = label, columns = prediction, each ordered
    (F = abnormal, T = normal); counts annotated."""
    cm = np.asarray(matrix)
    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues")
    names = ["F (abnormal)", "T (normal)"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set(xlabel="predicted", ylabel="label (true)")
    fig.suptitle(title)  # above the colorbar too, so a long rule name is not cut
    for (i, j), count in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            f"{count}",
            ha="center",
            va="center",
            fontsize=14,
            color="white" if count > cm.max() / 2 else "black",
        )
    fig.colorbar(im, ax=ax, label="images")
    return fig


def example_gallery(
    images: np.ndarray,
    reconstructions: np.ndarray,
    errors: np.ndarray,
    titles: Sequence[str],
    title: str,
) -> Figure:
    """One column per image: input, reconstruction and per-pixel absolute error (heatmap)."""
    n = len(images)
    fig = Figure(figsize=(max(2.0 * max(n, 1), 6), 6.6), layout="constrained")
    if n == 0:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
        fig.suptitle(title)
        return fig
    axes = fig.subplots(3, n, squeeze=False)
    vmax = float(np.max(errors)) or 1.0
    for j in range(n):
        for i, (img, cmap) in enumerate((_image(images[j]), _image(reconstructions[j]))):
            axes[i, j].imshow(img, cmap=cmap, vmin=0, vmax=1)
        heat = axes[2, j].imshow(errors[j], cmap="inferno", vmin=0, vmax=vmax)
        axes[0, j].set_title(titles[j], fontsize=8)
        for i in range(3):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for i, label in enumerate(("input", "reconstruction", "|error|")):
        axes[i, 0].set_ylabel(label, fontsize=9)
    fig.colorbar(heat, ax=axes[2, :].tolist(), label="absolute error", shrink=0.9)
    fig.suptitle(title, fontsize=11)
    return fig


def latent_pca(
    codings: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str],
    anomaly_classes: Sequence[int],
) -> Figure:
    """Codings means ``(N, latent_dim)`` projected on their first two principal components."""
    z = np.asarray(codings, float)
    centred = z - z.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    explained = sv[:2] ** 2 / max(np.sum(sv**2), 1e-12)
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    for k, c in enumerate(np.unique(classes)):
        sel = classes == c
        kind = "abnormal" if int(c) in anomaly_classes else "normal"
        ax.scatter(
            xy[sel, 0],
            xy[sel, 1],
            s=5,
            alpha=0.5,
            color=f"C{k}",
            marker="^" if kind == "abnormal" else "o",
            label=f"{class_names[int(c)]} ({kind})",
        )
    ax.set(
        xlabel=f"PC 1 ({explained[0]:.0%} of variance)",
        ylabel=f"PC 2 ({explained[1] if len(explained) > 1 else 0:.0%} of variance)",
        title="Codings means of the test images (PCA to 2-D)",
    )
    ax.legend(markerscale=3)
    return fig
