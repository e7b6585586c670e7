"""The plot kinds of a report: the built-ins drawn from a tiny comparison (two classification
settings, two regression settings, two seeds, a failing algorithm), read back from the
matplotlib figures; plugin plots; names drawn as written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

import metabench
from metabench import registry
from metabench.errors import MetabenchError
from metabench.metrics import metric_named
from metabench.plugins import get_plugin_manager
from metabench.reports import figures, plot_kinds
from metabench.reports.data import Filters, ReportData, assign_colors
from metabench.reports.leaderboard import build_report_data, ranks_across_settings
from metabench.reports.plots import draw, save_plots

BUILTIN = {"scores", "pareto", "curves", "adaptation", "costs", "cd"}
DRAWN = BUILTIN - {"adaptation"}  # the classification fixture has no rl adaptation curves
CLASSIFIERS = ["batched", "maml", "noisy", "protonet"]  # boom fails in its third step
OPTIONS = {"datasets": "micro,sinusoid", "backbone": "flat", "shots": [1, 2], "seeds": [0, 1],
           "episodes": 8, "budget": "episodes:6", "val_episodes": 3, "val_points": 2,
           "progress": False}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder: micro 5w1s and 5w2s (4 algorithms, boom failed) and sinusoid 1 and
    2 shots (maml only), seeds 0 and 1."""
    import test_compare_plugin

    manager = get_plugin_manager()
    manager.register(test_compare_plugin, name="test_compare_plugin")
    folder = tmp_path_factory.mktemp("plots")
    try:
        metabench.compare(algorithms=["protonet", "batched", "noisy", "boom", "maml"], out=folder,
                          **OPTIONS)
    finally:
        manager.unregister(test_compare_plugin)
    return folder


@pytest.fixture(scope="module")
def data(results) -> ReportData:
    return build_report_data([results])


def axes_titled(figure: Figure, setting: str) -> list:
    return [ax for ax in figure.axes if ax.get_title(loc="center").startswith(setting)
            or ax.get_title(loc="left").startswith(setting)]


def algorithms_in(data: ReportData, setting: str) -> list[str]:
    """The algorithms with a result in a setting, in colour order."""
    present = set(data.table.loc[data.table["setting"] == setting, "algorithm"])
    return [name for name in data.colors if name in present]


def legend_texts(figure: Figure) -> list[str]:
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def renamed(data: ReportData, old: str, new: str) -> ReportData:
    """The same data with one algorithm renamed everywhere."""

    def swap(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(algorithm=frame["algorithm"].replace(old, new))

    ranks = data.ranks
    if ranks is not None:
        ranks = dataclasses.replace(ranks, ranks=ranks.ranks.rename(index={old: new}))
    return dataclasses.replace(
        data, table=swap(data.table), cells=swap(data.cells), episodes=swap(data.episodes),
        colors={new if name == old else name: color for name, color in data.colors.items()},
        ranks=ranks)


def test_the_comparison_has_what_the_plots_need(data):
    assert set(data.table["setting"]) == {"micro 5w1s", "micro 5w2s", "sinusoid 1shot",
                                          "sinusoid 2shot"}
    assert algorithms_in(data, "micro 5w1s") == CLASSIFIERS
    assert "failed" in set(data.cells["status"]) and "boom" not in data.colors
    assert data.ranks is not None and data.ranks.settings == 2


def test_save_plots_writes_every_builtin_kind_as_png_and_svg(data, tmp_path):
    assert set(registry.get_plots()) >= BUILTIN
    written = save_plots(data, tmp_path / "plots")
    assert {path.name for path in written} == {f"{kind}.{fmt}" for kind in DRAWN
                                                for fmt in ("png", "svg")}
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private mode
        head = path.read_bytes()[:64]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in path.read_bytes()
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]
    again = save_plots(data, tmp_path / "again")  # the same results give the same bytes
    for first, second in zip(written, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_builtin_kinds_have_descriptions_and_come_from_the_hook():
    plots = registry.get_plots()
    for kind in DRAWN:
        assert plots[kind].plugin == "metabench.reports.plots" and plots[kind].description


def test_scores_one_bar_per_algorithm_per_setting_the_best_marked(data):
    figure = plot_kinds.scores_figure(data)
    assert figure is not None and len(figure.axes) == 4
    assert legend_texts(figure) == list(data.colors)
    for setting in set(data.table["setting"]):
        (ax,) = axes_titled(figure, setting)
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [c.get_label() for c in bars] == algorithms_in(data, setting)
        assert all(len(c) == 1 for c in bars)
        rows = data.table[data.table["setting"] == setting].set_index("algorithm")
        best = rows.index[rows["mark"] == ""][0]
        (starred,) = [t.get_text() for t in ax.texts if t.get_text().startswith("★")]
        row = dict(rows.loc[best])
        metric = metric_named(row["metric"])
        assert starred == "★ " + metric.format_mean_ci(row["mean"], figures.interval(row))
        outlined = [c.get_label() for c in bars if c.patches[0].get_linewidth() > 0]
        assert outlined == [best]
    (failed,) = axes_titled(figure, "micro 5w1s")
    assert "failed: boom" in failed.get_title()
    (regression,) = axes_titled(figure, "sinusoid 1shot")
    assert regression.get_xlabel() == "test mse (lower is better)"
    assert axes_titled(figure, "micro 5w2s")[0].get_xlabel() == "test accuracy (%)"


def test_scores_bars_are_percent_for_accuracy(data):
    figure = plot_kinds.scores_figure(data)
    (ax,) = axes_titled(figure, "micro 5w2s")
    rows = data.table[data.table["setting"] == "micro 5w2s"].set_index("algorithm")
    for container in ax.containers:
        if isinstance(container, BarContainer):
            width = container.patches[0].get_width()
            assert width == pytest.approx(100 * rows.loc[container.get_label(), "mean"])


def test_pareto_one_point_per_algorithm_and_the_front(data):
    figure = plot_kinds.pareto_figure(data)
    assert figure is not None
    assert legend_texts(figure) == [*data.colors, "on the Pareto front", "Pareto front"]
    for setting in set(data.table["setting"]):
        (ax,) = axes_titled(figure, setting)
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert [c.get_label() for c in points] == algorithms_in(data, setting)
        rows = data.table[data.table["setting"] == setting].set_index("algorithm")
        for point in points:
            x, y = point.get_offsets()[0]
            row = rows.loc[point.get_label()]
            assert x == pytest.approx(row["train_time_s"])
            assert y == pytest.approx(row["mean"] * (100 if row["metric"] == "accuracy" else 1))
        fronts = [line for line in ax.lines if line.get_label() == "Pareto front"]
        times, scores = rows["train_time_s"].tolist(), rows["mean"].tolist()
        if rows["metric"].iloc[0] == "mse":
            scores = [-s for s in scores]
        front = plot_kinds.pareto_front(times, scores)
        assert len(fronts) == (1 if len(front) > 1 else 0)
        if fronts:
            assert list(fronts[0].get_xdata()) == pytest.approx([times[i] for i in front])


def test_pareto_front_lower_time_higher_score():
    assert plot_kinds.pareto_front([1, 2, 3, 4], [0.5, 0.7, 0.6, 0.9]) == [0, 1, 3]
    assert plot_kinds.pareto_front([3, 1, 2], [0.9, 0.9, 0.1]) == [1]
    assert plot_kinds.pareto_front([2, 2], [0.1, 0.4]) == [1]


def test_curves_one_line_per_algorithm_averaged_over_seeds(data):
    figure = plot_kinds.curves_figure(data)
    assert figure is not None and len(figure.axes) == 8  # 4 settings x (episodes, seconds)
    assert legend_texts(figure) == list(data.colors)
    for setting in set(data.table["setting"]):
        (by_episodes,) = axes_titled(figure, setting)
        by_seconds = figure.axes[figure.axes.index(by_episodes) + 1]  # the same row
        assert by_episodes.get_xlabel() == "meta-training episodes"
        assert by_seconds.get_xlabel() == "meta-training time (s)"
        for ax in (by_episodes, by_seconds):
            assert [line.get_label() for line in ax.lines] == algorithms_in(data, setting)
    (ax,) = axes_titled(figure, "micro 5w2s")
    (line,) = [line for line in ax.lines if line.get_label() == "protonet"]
    cells = data.cells[(data.cells["algorithm"] == "protonet") & (data.cells["shots"] == 2)
                       & (data.cells["dataset"] == "micro")]
    assert len(cells) == 2
    expected = np.mean([[100 * p["val_accuracy"] for p in curve] for curve in cells["curve"]], axis=0)
    assert list(line.get_ydata()) == pytest.approx(list(expected))
    assert list(line.get_xdata()) == [p["episodes"] for p in cells["curve"].iloc[0]]
    (regression,) = axes_titled(figure, "sinusoid 2shot")
    assert regression.get_ylabel() == "validation mse (lower is better)"


def test_costs_one_bar_per_algorithm_and_setting(data):
    figure = plot_kinds.costs_figure(data)
    assert figure is not None
    memory, adaptation = figure.axes
    assert memory.get_ylabel() == "peak memory (MB)"
    assert adaptation.get_ylabel() == "time per episode (ms)"
    assert [t.get_text() for t in memory.get_xticklabels()] == list(dict.fromkeys(data.table["setting"]))
    settings = data.table.groupby("algorithm")["setting"].nunique()
    for ax, column in ((memory, "peak_mb"), (adaptation, "adapt_ms")):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [c.get_label() for c in bars] == list(data.colors)
        for container in bars:
            name = container.get_label()
            assert len(container) == settings[name]
            values = data.table.loc[data.table["algorithm"] == name, column]
            assert sorted(p.get_height() for p in container) == pytest.approx(sorted(values))


def test_cd_diagram_needs_two_settings(results, data):
    figure = plot_kinds.cd_figure(data)
    assert figure is not None and data.ranks is not None
    (ax,) = figure.axes
    lines = [line for line in ax.lines if line.get_label() in data.colors]
    assert [line.get_label() for line in lines] == list(data.ranks.ranks.index)
    assert sorted(line.get_label() for line in lines) == sorted(CLASSIFIERS)
    for line in lines:  # each drops from its average rank on the axis
        assert line.get_xdata()[0] == pytest.approx(data.ranks.ranks[line.get_label()])
        assert line.get_color() == data.colors[line.get_label()]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert f"CD = {data.ranks.critical_difference:.2f}" in texts and "Friedman p" in texts

    one = build_report_data([results], Filters(datasets=["micro"], shots=[1]))
    assert one.ranks is None and plot_kinds.cd_figure(one) is None
    assert set(draw(one)) == DRAWN - {"cd", "adaptation"}


def test_cliques_join_algorithms_within_the_critical_difference():
    assert plot_kinds.cliques([1.0, 1.5, 3.0, 3.2], 1.0) == [(0, 1), (2, 3)]
    assert plot_kinds.cliques([1.0, 1.8, 2.6], 1.0) == [(0, 1), (1, 2)]
    assert plot_kinds.cliques([1.0, 3.0], 1.0) == []
    assert plot_kinds.cliques([1.0, 1.2, 1.4], 5.0) == [(0, 2)]


def test_a_plugin_plot_is_drawn(data):
    class Plugin:
        @metabench.hookimpl
        def register_plots(self, register: metabench.RegisterPlot) -> None:
            register("count", self.count, description="cells per status")

        @staticmethod
        def count(data: ReportData) -> Figure:
            figure = Figure()
            counts = data.cells["status"].value_counts()
            figure.subplots().bar(counts.index, counts.to_numpy())
            return figure

    get_plugin_manager().register(Plugin(), name="count-plot")
    assert registry.get_plots()["count"].plugin == "count-plot"
    figures = draw(data, ["count", "scores"])
    assert list(figures) == ["count", "scores"]
    (bars,) = figures["count"].axes[0].containers
    assert len(bars) == data.cells["status"].nunique()
    assert set(draw(data)) == DRAWN | {"count"}


def test_unknown_kind_names_the_known_ones(data):
    with pytest.raises(MetabenchError, match="unknown plot kind 'score'") as error:
        draw(data, ["score"])
    message = str(error.value)
    assert "did you mean 'scores'" in message
    assert all(kind in message for kind in BUILTIN)


def test_names_from_plugins_are_drawn_as_written(data, tmp_path):
    name = "$x$ <b>"
    odd = renamed(data, "noisy", name)
    figures = draw(odd)
    assert set(figures) == DRAWN
    for kind, figure in figures.items():
        if kind == "cd":  # names next to the rank axis: "$x$ <b> (2.50)"
            texts = [t for t in figure.axes[0].texts if t.get_text().startswith(f"{name} (")]
        else:
            texts = [t for legend in figure.legends for t in legend.get_texts()
                     if t.get_text() == name]
        assert len(texts) == 1, kind
        assert not texts[0].get_parse_math() and not texts[0].get_usetex(), kind
    (ax,) = axes_titled(figures["scores"], "micro 5w1s")
    assert r"\$x\$ <b>" in [t.get_text() for t in ax.get_yticklabels()]  # rendered as $x$ <b>
    written = save_plots(odd, tmp_path, formats=("png",))  # mathtext would fail to parse "<b>"
    assert len(written) == len(DRAWN)


def test_missing_profiles_and_costs(data, tmp_path):
    costs = ["train_time_s", "adapt_ms", "peak_mb", "peak_train_mb", "peak_eval_mb"]
    bare = dataclasses.replace(
        data, table=data.table.drop(columns=costs),
        cells=data.cells.drop(columns=[c for c in data.cells if c.startswith("profile")]))
    figures = draw(bare)
    assert set(figures) == {"scores", "curves", "cd"}  # no times, no memory: nothing to show
    half = data.table.assign(adapt_ms=np.nan, train_time_s=data.table["train_time_s"].where(
        data.table["algorithm"] != "protonet"))
    partial = dataclasses.replace(data, table=half)
    figure = plot_kinds.pareto_figure(partial)
    assert figure is not None
    (ax,) = axes_titled(figure, "micro 5w1s")
    assert "no training time: protonet" in ax.get_title()
    costs_figure = plot_kinds.costs_figure(partial)
    assert costs_figure is not None
    assert [t.get_text() for t in costs_figure.axes[1].texts] == ["not recorded"]
    assert len(save_plots(partial, tmp_path, formats=("png",))) == len(DRAWN)


def test_no_results_no_figures(data):
    empty = dataclasses.replace(data, table=pd.DataFrame(), cells=data.cells.iloc[:0],
                                episodes=data.episodes.iloc[:0], ranks=None, colors={})
    assert draw(empty) == {}


def test_many_algorithms_one_setting_built_by_hand(tmp_path):
    names = [f"algo-{i:02d}" for i in range(14)]
    rng = np.random.default_rng(0)
    rows = [{"setting": s, "group": f"{s} q15 · 50 test episodes · seeds 0 · episodes:10",
             "metric": "accuracy", "algorithm": name, "mean": rng.uniform(0.2, 0.9), "ci": 0.02,
             "mark": "*", "rank": 0.0, "train_time_s": 10 ** rng.uniform(-1, 3),
             "adapt_ms": rng.uniform(1, 50), "peak_mb": rng.uniform(100, 900)}
            for s in ("toy 5w1s", "toy 5w5s") for name in names]
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby("setting")["mean"].rank(ascending=False)
    table.loc[table["rank"] == 1, "mark"] = ""
    empty = pd.DataFrame(columns=["run", "algorithm", "status", "curve"])
    data = ReportData(episodes=pd.DataFrame(), cells=empty, table=table, runs={},
                      ranks=ranks_across_settings(table), colors=assign_colors(names))
    figures = draw(data)
    assert set(figures) == DRAWN - {"curves"}  # no cells: no learning curves
    for ax in figures["scores"].axes:
        assert len([c for c in ax.containers if isinstance(c, BarContainer)]) == len(names)
    for ax in figures["pareto"].axes:
        assert ax.get_xscale() == "log"  # 0.1 s to 1000 s
    assert len(set(legend_texts(figures["costs"]))) == len(names)
    one = dataclasses.replace(data, table=table[table["setting"] == "toy 5w1s"], ranks=None)
    assert set(draw(one)) == {"scores", "pareto", "costs"}
    assert len(save_plots(one, tmp_path, formats=("png",))) == 3
