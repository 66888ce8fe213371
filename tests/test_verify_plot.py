"""verify's plot says what it shows: n and a 95 % interval per bar, PARTIAL runs, visible zeros, model names."""

from __future__ import annotations

import pytest

from dsd_zoo.verify.report import error_interval, plot_figure

pytest.importorskip("matplotlib", reason="the plot needs matplotlib (pip install 'dsd-zoo[plot]')")


def _row(name, arch, kind, n, top1_correct, top5_correct, paper1, paper5):
    return {
        "name": name,
        "arch": arch,
        "kind": kind,
        "images": n,
        "top1_correct": top1_correct,
        "top5_correct": top5_correct,
        "top1_err": 100 * (1 - top1_correct / n),
        "top5_err": 100 * (1 - top5_correct / n),
        "paper_top1_err": paper1,
        "paper_top5_err": paper5,
    }


def test_wilson_interval():
    # Wilson's score interval (1927): 0 errors in 3 -> [0, 56.15] %; 1 in 10 -> [1.79, 40.42] %.
    assert error_interval(0, 3) == pytest.approx((0.0, 56.15), abs=0.01)
    assert error_interval(1, 10) == pytest.approx((1.79, 40.42), abs=0.01)


def test_a_three_image_run_says_partial_and_shows_n_intervals_and_zero_bars():
    import matplotlib.pyplot as plt

    rows = [
        _row("squeezenet_caffe", "squeezenet1_0", "baseline", 3, 3, 3, 42.56, 19.52),  # 0 % errors
        _row("squeezenet_dsd", "squeezenet1_0", "dsd", 3, 2, 3, 38.24, 16.53),
    ]
    figure = plot_figure(rows, "dsd-zoo verify", "PARTIAL RUN, 3 of 50,000 images: not comparable with the paper")
    try:
        assert "PARTIAL RUN, 3 of 50,000 images" in figure._suptitle.get_text()
        top1 = figure.axes[0]
        assert [label.get_text() for label in top1.get_xticklabels()] == ["squeezenet_caffe", "squeezenet_dsd"]
        annotations = [text.get_text() for text in top1.texts]
        assert "0.0%\nn=3" in annotations and "33.3%\nn=3" in annotations
        zero = [patch for patch in top1.patches if patch.get_height() == 0]
        assert zero and zero[0].get_linewidth() > 0  # drawn as a line, not invisible
        assert len(top1.containers) >= 2  # bars and the interval error bars
        legend = top1.get_legend()
        assert legend.get_bbox_to_anchor().x0 > top1.get_window_extent().x1 - 1  # beside the axes, over no bar
    finally:
        plt.close(figure)


def test_one_model_on_a_thousand_images_is_a_bar_with_the_paper_in_the_legend():
    import matplotlib.pyplot as plt

    # Counts of a 1,000-image run of the converted sparse stage (564 top-1 and 412 top-5 errors).
    figure = plot_figure(
        [_row("squeezenet_sparse", "squeezenet1_0", "sparse", 1000, 436, 588, 42.5, 19.7)],
        "dsd-zoo verify",
        "PARTIAL RUN, 1,000 of 50,000 images: not comparable with the paper",
    )
    try:
        top1 = figure.axes[0]
        assert "56.4%\nn=1,000" in [text.get_text() for text in top1.texts]
        (bar,) = [patch for patch in top1.patches if patch.get_height() > 0]
        low, high = top1.get_xlim()
        assert bar.get_width() / (high - low) < 0.3  # a bar, not the whole panel
        assert [text.get_text() for text in top1.get_legend().get_texts()] == ["paper", "sparse"]
    finally:
        plt.close(figure)
