"""Each figure function returns a Figure with the axes and artists a reader needs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vae_anomaly import plots

rng = np.random.default_rng(0)
SEED_RULES = {
    "threshold1 train_mean_2.5std": 0.5,
    "threshold2 abnormal": 0.6,
    "threshold3 normal": 0.4,
    "threshold4 midpoint": 0.55,
    "threshold5 best": 0.52,
}
COLOURS = {k: plots.SEED_THRESHOLD_COLOURS[k.split()[0]] for k in SEED_RULES}


def _vlines(ax) -> list[Line2D]:
    return [
        line
        for line in ax.get_lines()
        if np.ptp(line.get_xdata()) == 0 and len(line.get_xdata()) == 2
    ]


def test_histogram_of_all_test_scores_has_one_line_per_rule_in_the_seed_colours():
    groups = {"normal test": rng.normal(0.3, 0.1, 300), "abnormal test": rng.normal(0.7, 0.1, 100)}
    fig = plots.score_histogram(groups, SEED_RULES, COLOURS, "all test")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    lines = _vlines(ax)
    assert sorted(line.get_xdata()[0] for line in lines) == sorted(SEED_RULES.values())
    assert {line.get_color() for line in lines} == {"red", "blue", "cyan", "magenta", "green"}
    assert len(ax.patches) == 200  # 100 bins per group, two groups
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("threshold5" in t for t in legend) and any("n=100" in t for t in legend)


def test_interpolation_grid_has_35_images_and_generated_12():
    images = rng.uniform(size=(35, 1, 8, 8))
    fig = plots.image_grid(images, 5, 7, "interpolation")
    assert sum(len(ax.images) for ax in fig.axes) == 35
    assert sum(len(ax.images) for ax in plots.image_grid(images[:12], 3, 4, "g").axes) == 12


def test_reconstruction_grid_shows_originals_over_reconstructions():
    x = rng.uniform(size=(40, 8, 8))
    fig = plots.reconstruction_grid(x, x[:, None] * 0.5, "normal test")
    top, bottom = fig.axes
    assert top.images[0].get_array().shape == (8, 30 * 9 - 1)  # 30 images, 1-pixel gaps
    assert bottom.get_ylabel() == "reconstruction"


def test_pixel_plots_fill_the_abnormal_error_against_its_own_input():
    normal, abnormal = np.zeros((1, 4, 4)), np.ones((1, 4, 4))
    fig = plots.pixel_plots(normal, normal + 0.1, abnormal, abnormal * 0.5)
    abnormal_ax = fig.axes[1]
    red = next(line for line in abnormal_ax.get_lines() if line.get_color() == "red")
    np.testing.assert_allclose(red.get_ydata(), 1.0)
    assert "0.5000" in abnormal_ax.get_title()  # mean |error| of the abnormal image itself


def test_roc_pr_marks_each_rule_and_names_auroc():
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    s = np.r_[rng.uniform(0, 0.6, 50), rng.uniform(0.4, 1, 50)]
    fig = plots.roc_pr_curves(y, s, SEED_RULES, COLOURS)
    roc, pr = fig.axes
    assert len([line for line in roc.get_lines() if line.get_marker() == "o"]) == 5
    assert "AUROC" in roc.get_legend().get_texts()[0].get_text()
    assert "AP" in pr.get_legend().get_texts()[0].get_text()


def test_sweep_confusion_loss_gallery_and_pca():
    fig = plots.threshold_sweep([0.1, 0.2, 0.3], [0.6, 0.9, 0.7], 0.2)
    marked = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert marked[0].get_xdata()[0] == 0.2 and marked[0].get_ydata()[0] == 0.9
    fig = plots.confusion_heatmap([[1, 2], [3, 40]], "cm")
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1", "2", "3", "40"]
    assert "label" in fig.axes[0].get_ylabel()
    fig = plots.loss_curves([3, 2, 1.5], [3.1, 2.2, 2.4], 2)
    assert any(line.get_xdata()[0] == 2 for line in _vlines(fig.axes[0]))
    x = rng.uniform(size=(3, 1, 8, 8))
    fig = plots.example_gallery(x, x, x[:, 0], ["a", "b", "c"], "g")
    assert sum(len(ax.images) for ax in fig.axes) == 9
    fig = plots.latent_pca(
        rng.normal(size=(30, 4)), np.repeat([0, 1, 7], 10), [str(i) for i in range(10)], [7]
    )
    assert len(fig.axes[0].collections) == 3


@pytest.mark.parametrize(
    "seed_name, colour", [("threshold1", "green"), ("threshold5", "red"), (None, "tab:orange")]
)
def test_threshold_colours(seed_name, colour):
    assert plots.threshold_colours({"rule": seed_name})["rule"] == colour
