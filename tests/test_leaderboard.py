"""``metabench leaderboard``: pooling across runs, seed intervals, formats, filters, bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)
from test_plugins import assert_one_line_error

import metabench
from metabench.rerun import compare_command
from metabench.stats import SampleStats

pytestmark = pytest.mark.usefixtures("compare_plugin")

TINY = {"algorithms": ["protonet", "batched"], "datasets": "micro", "backbone": "flat",
        "shots": [1, 2], "episodes": 10, "budget": "episodes:6", "val_episodes": 3,
        "val_points": 2, "progress": False}


@pytest.fixture
def results(tmp_path) -> Path:
    metabench.compare(out=tmp_path, **TINY)
    return tmp_path


def expected_scores(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """Mean and 95% half-width per (algorithm, shots), straight from the episodes."""
    episodes = metabench.load_results(path)
    return {(algorithm, shots): (stats.mean, stats.half_width)
            for (algorithm, shots), frame in episodes.groupby(["algorithm", "shots"])
            for stats in [SampleStats(frame["accuracy"].to_numpy())]}


def test_csv_and_json_round_trip_the_means_and_intervals(run_cli, results, tmp_path):
    expected = expected_scores(results)
    for fmt in ("csv", "json"):
        result = run_cli("leaderboard", str(results), "--format", fmt, "-o", str(tmp_path / f"lb.{fmt}"))
        assert result.code == 0, result.err
    frames = {"csv": pd.read_csv(tmp_path / "lb.csv"),
              "json": pd.DataFrame(json.loads((tmp_path / "lb.json").read_text()))}
    for frame in frames.values():
        assert len(frame) == 4
        for row in frame.itertuples():
            mean, ci = expected[(row.algorithm, row.shots)]
            assert row.mean == pytest.approx(mean, rel=1e-12)
            assert row.ci == pytest.approx(ci, rel=1e-12)
            assert row.mark in ("", "*", "=") or pd.isna(row.mark)


def test_markdown_and_latex_have_a_row_per_algorithm_and_setting(run_cli, results):
    markdown = run_cli("leaderboard", str(results), "--format", "md")
    assert markdown.code == 0, markdown.err
    rows = [line for line in markdown.out.splitlines() if line.startswith("| micro ")]
    assert len(rows) == 4
    assert {(row.split(" | ")[0], row.split(" | ")[1]) for row in rows} == {
        ("| micro 5w1s", "protonet"), ("| micro 5w1s", "batched"),
        ("| micro 5w2s", "protonet"), ("| micro 5w2s", "batched")}
    assert "reproduce: `` metabench --plugin" not in markdown.out  # the fixture loads no module
    assert "- reproduce: `` metabench compare --algorithms protonet,batched" in markdown.out
    latex = run_cli("leaderboard", str(results), "--format", "latex").out
    assert latex.count("micro 5w") == 4 and "\\toprule" in latex


def test_the_terminal_table_says_the_interval_is_over_episodes_with_one_seed(run_cli, results):
    result = run_cli("leaderboard", str(results))
    assert result.code == 0
    assert "one seed: intervals are over test episodes only" in result.out
    assert result.out.count("  protonet ") == 2 and "micro 5w2s" in result.out


def test_runs_with_different_test_episodes_stay_apart(run_cli, tmp_path):
    metabench.compare(out=tmp_path, **TINY)
    metabench.compare(out=tmp_path, **{**TINY, "episodes": 8, "algorithms": ["noisy"]})
    frame = metabench.leaderboard(tmp_path)
    assert set(frame["test_episodes"]) == {8, 10}
    # noisy never shares a group with protonet: different test episodes.
    assert frame.groupby("group")["algorithm"].apply(set).map(
        lambda names: "noisy" not in names or names == {"noisy"}).all()
    notes = frame.attrs["notes"]
    assert any(note.startswith("kept apart, different protocols: micro 5w1s") for note in notes)
    result = run_cli("leaderboard", str(tmp_path))
    assert "kept apart, different protocols" in result.out


def test_the_newest_complete_run_wins_unless_all_runs(tmp_path):
    first = metabench.compare(out=tmp_path, **{**TINY, "shots": [1]}).attrs["run"]
    second = metabench.compare(out=tmp_path, **{**TINY, "shots": [1], "seeds": [0]},
                               hparams={"protonet": {"lr": 0.01}}).attrs["run"]
    frame = metabench.leaderboard(tmp_path)
    assert len(frame) == 2 and set(frame.loc[frame["algorithm"] == "protonet", "run"]) == {second}
    everything = metabench.leaderboard(tmp_path, all_runs=True)
    assert set(everything["algorithm"]) == {f"protonet [{first}]", f"protonet [{second}]",
                                            f"batched [{first}]", f"batched [{second}]"}
    only_first = metabench.leaderboard(f"{tmp_path}/{first}")
    assert set(only_first["run"]) == {first}


def test_three_seeds_show_the_between_seed_interval(run_cli, tmp_path):
    metabench.compare(out=tmp_path, **{**TINY, "shots": [1], "seeds": [0, 1, 2]})
    frame = metabench.leaderboard(tmp_path)
    assert (frame["seeds"] == "0,1,2").all() and frame["seed_ci"].notna().all()
    episodes = metabench.load_results(tmp_path)
    protonet = episodes[episodes["algorithm"] == "protonet"].groupby("seed")["accuracy"].mean()
    row = frame.set_index("algorithm").loc["protonet"]
    assert row["seed_ci"] == pytest.approx(SampleStats(protonet.to_numpy()).half_width)
    assert "(seeds ±" in row["score"]
    assert any("per-seed means" in note for note in frame.attrs["notes"])
    assert "(seeds ±" in run_cli("leaderboard", str(tmp_path)).out


def test_filters_keep_what_they_name(results):
    frame = metabench.leaderboard(results, shots=2, algorithms="protonet")
    assert list(frame["algorithm"]) == ["protonet"] and list(frame["shots"]) == [2]


@pytest.mark.parametrize(("args", "message"), [
    (["/no/such/folder"], "no metabench results at /no/such/folder"),
    (["{results}/2001-01-01T00-00-00"], "no run '2001-01-01T00-00-00'"),
    (["{results}", "--format", "xlsx", "-o", "{results}/t.xlsx"], "unknown format 'xlsx'"),
    (["{results}", "--shots", "7"], "--shots 7 matches no result"),
    (["{results}", "--confidence", "1.5"], "confidence=1.5 must lie strictly between 0 and 1"),
    (["{results}", "--format", "md", "-o", "{results}/metabench.sqlite/x.md"], "cannot write"),
])
def test_bad_input_is_one_line_and_writes_nothing(run_cli, results, args, message):
    before = sorted(p.name for p in results.iterdir())
    result = run_cli("leaderboard", *[arg.format(results=results) for arg in args])
    assert result.code == 2 and message in result.err, result.err
    assert_one_line_error(result.err)
    assert sorted(p.name for p in results.iterdir()) == before


def test_the_rebuilt_command_reruns_the_same_comparison(run_cli, results, tmp_path):
    (record_config,) = [json.loads(text) for text in _stored_configs(results)]
    command = compare_command(record_config)
    args = shlex.split(command)[1:]
    assert args[0] == "compare"
    again = run_cli(*args, "--out", str(tmp_path / "again"), "--no-progress", "--no-report")
    assert again.code == 0, again.err
    columns = ["algorithm", "shots", "episode", "accuracy"]
    first = metabench.load_results(results)[columns].sort_values(columns[:3]).reset_index(drop=True)
    second = metabench.load_results(tmp_path / "again")[columns].sort_values(columns[:3])
    pd.testing.assert_frame_equal(first, second.reset_index(drop=True))


def _stored_configs(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path / "metabench.sqlite") as db:
        return [row[0] for row in db.execute("SELECT config FROM runs")]
