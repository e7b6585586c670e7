"""The rl task type through the harness: navigation2d and velocity1d as data sets, the same
tasks and noise for every algorithm, returns in the store and the leaderboard, baselines,
and classification-only algorithms skipped with the reason (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest

import metabench
from metabench import registry
from metabench.episodes import EpisodeSampler
from metabench.protocol import TaskSpec

TINY = {"datasets": "navigation2d", "shots": 2, "queries": 3, "episodes": 6,
        "budget": "episodes:4", "val_episodes": 2, "val_points": 2, "progress": False}


def test_rl_task_families_are_data_sets_with_seeded_task_splits():
    datasets = registry.get_datasets()
    assert datasets["navigation2d"].task_types == {"rl"}
    assert datasets["velocity1d"].task_types == {"rl"}
    dataset = datasets["navigation2d"].factory()
    spec = TaskSpec(5, 2, 3, "rl")
    test = EpisodeSampler(dataset, "test", spec, seed=0)
    assert spec.label == "2traj"
    assert test.episode(4).support_x.tolist() == EpisodeSampler(dataset, "test", spec,
                                                                seed=0).episode(4).support_x.tolist()
    validation = EpisodeSampler(dataset, "validation", spec, seed=0)
    assert test.episode(4).support_x.tolist() != validation.episode(4).support_x.tolist()
    assert test.episode(4).support_x.abs().max() <= 0.5


def test_identical_policies_face_identical_tasks_and_noise(tmp_path):
    # Two untrained copies of the same baseline: the same initial policy (shared backbone
    # seed), the same test tasks and noise, so the same returns to the last digit.
    frame = metabench.compare(algorithms=["random", "twin"], variants=["twin=random"],
                              out=tmp_path, **TINY)
    returns = frame.pivot_table(index="episode", columns="algorithm", values="avg_return")
    assert len(returns) == 6 and returns["random"].notna().all()
    np.testing.assert_array_equal(returns["random"].to_numpy(), returns["twin"].to_numpy())
    assert frame["accuracy"].isna().all() and frame["mse"].isna().all()


def test_meta_learners_and_baselines_run_and_report_returns(tmp_path, run_cli):
    frame = metabench.compare(algorithms=["maml", "fomaml", "reptile", "pretrained", "random",
                                          "protonet"], out=tmp_path, **TINY)
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert cells.loc["protonet", "status"] == "skipped"
    assert "protonet supports classification tasks, not rl" in cells.loc["protonet", "reason"]
    ran = cells.drop(index="protonet")
    assert set(ran["status"]) == {"ok"}, ran["reason"].to_dict()
    assert all("val_avg_return" in point for curve in ran["curve"] for point in curve)
    assert frame["avg_return"].notna().all() and (frame["avg_return"] <= 0).all()
    board = metabench.leaderboard(tmp_path)
    assert set(board["setting"]) == {"navigation2d 2traj"}
    assert board["score"].str.startswith("avg_return ").all()
    shown = run_cli("leaderboard", str(tmp_path))
    assert shown.code == 0 and "navigation2d 2traj" in shown.out and "avg_return" in shown.out


def test_velocity_tasks_run_too(tmp_path):
    frame = metabench.compare(algorithms=["maml"], out=tmp_path,
                              **{**TINY, "datasets": "velocity1d"})
    assert len(frame) == 6 and frame["avg_return"].notna().all()


@pytest.mark.parametrize("name", ["navigation2d", "velocity1d"])
def test_rl_data_sets_are_listed(run_cli, name):
    result = run_cli("datasets", name, "--json")
    assert result.code == 0 and '"task_type": "rl"' in result.out


def test_plots_of_returns_draw_negative_scores(tmp_path):
    import warnings

    from metabench.reports.leaderboard import build_report_data
    from metabench.reports.plot_kinds import scores_figure

    metabench.compare(algorithms=["maml", "random"], out=tmp_path, **TINY)
    figure = scores_figure(build_report_data([tmp_path]))
    assert figure is not None
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    assert low < min(bar.get_width() for bar in ax.patches) and high > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constrained layout collapsed on negative bars once
        figure.savefig(tmp_path / "scores.png")
