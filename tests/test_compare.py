"""End-to-end tests of ``metabench compare``: the API, the command, failures, resume."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_compare_plugin import ARMED, compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench import results, session
from metabench.cli import cli, main
from metabench.errors import MetabenchError
from metabench.metrics import metric_named
from metabench.plugins import load_plugins
from metabench.reports import leaderboard
from metabench.store import Store

pytestmark = pytest.mark.usefixtures("compare_plugin")

TINY = {
    "datasets": "micro", "backbone": "flat", "shots": [1, 2], "episodes": 12,
    "budget": "episodes:12", "val_episodes": 4, "val_points": 3, "progress": False,
}
TINY_FLAGS = ["--datasets", "micro", "--backbone", "flat", "--shots", "1", "--episodes", "8",
              "--budget", "episodes:6", "--val-episodes", "3", "--val-points", "2",
              "--no-progress"]
SCORES = ["algorithm", "ways", "shots", "seed", "episode", "accuracy", "loss"]


def scores(frame: pd.DataFrame) -> pd.DataFrame:
    """The result columns of an episodes frame in a canonical order (no run id)."""
    return frame[SCORES].sort_values(SCORES[:5]).reset_index(drop=True)


def test_tiny_comparison_end_to_end(tmp_path):
    frame = metabench.compare(algorithms=["protonet", "batched"], out=tmp_path, **TINY)
    assert len(frame) == 2 * 2 * 12
    assert {"run", "algorithm", "dataset", "ways", "shots", "queries", "seed", "episode",
            "accuracy", "loss"} <= set(frame.columns)
    assert frame["accuracy"].between(0, 1).all() and frame["mse"].isna().all()
    assert frame.attrs["failed"] == [] and (tmp_path / "metabench.sqlite").exists()

    cells = metabench.load_cells(tmp_path).set_index("key")
    assert set(cells["status"]) == {"ok"}
    batched = cells.loc["batched/micro/5w1sq15/seed0"]
    protonet = cells.loc["protonet/micro/5w1sq15/seed0"]
    # The same budget of 12 training episodes: 4 steps of 3 episodes, or 12 steps of 1.
    assert (batched["steps"], batched["train_episodes"]) == (4, 12)
    assert (protonet["steps"], protonet["train_episodes"]) == (12, 12)
    assert [point["episodes"] for point in protonet["curve"]] == [4, 8, 12]
    assert protonet["best_step"] in [point["step"] for point in protonet["curve"]]
    assert protonet["hparams"]["lr"] == pytest.approx(1e-3)
    assert protonet["profile"]["train_steps"] == 12
    assert protonet["profile.adapt_median_s"] > 0

    loaded = metabench.load_results(tmp_path)
    pd.testing.assert_frame_equal(scores(loaded), scores(frame))
    assert {"steps", "status", "profile.train_time_s"} <= set(loaded.columns)

    table = leaderboard.leaderboard(frame, metabench.load_cells(tmp_path))
    assert len(table) == 4 and set(table["shots"]) == {1, 2}
    assert {"mean", "ci", "rank", "mark", "train_time_s", "adapt_ms", "peak_train_mb",
            "steps"} <= set(table.columns)
    best = table.loc[table["rank"] == 1]
    assert (best["mark"] == "").all() and set(table["mark"]) <= {"", "*", "="}


def test_every_algorithm_sees_the_same_test_episodes(tmp_path):
    frame = metabench.compare(algorithms=["protonet", "noisy"], out=tmp_path, **TINY)
    run = frame.attrs["run"]
    with Store.open_existing(tmp_path) as store:
        environment = store.run(run).environment
    assert environment["torch"] and environment["device"] == "cpu"
    assert "test_compare_plugin" in environment["plugins"]
    counts = frame.groupby(["algorithm", "shots"])["episode"].apply(list)
    assert all(episodes == list(range(12)) for episodes in counts)


def test_ranks_across_settings_mix_accuracy_and_mse_and_skip_gaps():
    table = pd.DataFrame({
        "metric": ["accuracy"] * 4 + ["mse"] * 2 + ["accuracy"],
        "dataset": ["micro"] * 4 + ["sinusoid"] * 2 + ["other"],
        "ways": [5, 5, 5, 5, 1, 1, 5], "shots": [1, 1, 2, 2, 5, 5, 1], "queries": [15] * 7,
        "algorithm": ["a", "b", "a", "b", "a", "b", "a"],
        "mean": [0.9, 0.5, 0.8, 0.6, 0.3, 0.1, 0.7],
    })
    summary = leaderboard.ranks_across_settings(table)
    # a wins both accuracy settings; b has the lower MSE; "other" has no b and is left out.
    assert summary.settings == 3
    assert summary.ranks.to_dict() == pytest.approx({"a": 4 / 3, "b": 5 / 3})
    assert leaderboard.ranks_across_settings(table.iloc[:2]) is None
    assert leaderboard.ranks_across_settings(pd.DataFrame()) is None


def test_the_command_prints_average_ranks_over_settings(tmp_path):
    flags = [f if f != "1" else "1,2" for f in TINY_FLAGS]
    result = CliRunner().invoke(cli, ["compare", "-a", "protonet,batched", *flags,
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "average ranks over 2 settings: " in result.output
    assert "Friedman χ²" in result.output and "Nemenyi critical difference" in result.output


def test_two_identical_runs_give_identical_results(tmp_path):
    options = {**TINY, "shots": [1], "algorithms": ["protonet", "noisy", "maml"],
               "hparams": ["maml.meta_batch_size=2", "maml.test_steps=1"]}
    first = metabench.compare(out=tmp_path / "a", **options)
    second = metabench.compare(out=tmp_path / "b", **options)
    pd.testing.assert_frame_equal(scores(first), scores(second))
    # A cell does not depend on what ran before it: noisy alone gives the same numbers.
    alone = metabench.compare(out=tmp_path / "c", **{**options, "algorithms": ["noisy"],
                                                      "hparams": None})
    pd.testing.assert_frame_equal(scores(alone), scores(first[first.algorithm == "noisy"]))


def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path):
    options = {**TINY, "algorithms": ["protonet", "interrupter", "batched"]}
    reference = metabench.compare(out=tmp_path / "whole", **options)

    ARMED["interrupt"] = True
    with pytest.raises(KeyboardInterrupt):
        metabench.compare(out=tmp_path / "cut", **options)
    with Store.open_existing(tmp_path / "cut") as store:
        (run,) = store.runs()
        assert run.status == "interrupted"
        assert store.cell_keys(run.id) == {"protonet/micro/5w1sq15/seed0"}

    ARMED["interrupt"] = False
    resumed = metabench.compare(out=tmp_path / "cut", resume=True, **options)
    assert resumed.attrs["run"] == run.id
    pd.testing.assert_frame_equal(scores(resumed), scores(reference))
    with Store.open_existing(tmp_path / "cut") as store:
        assert store.run(run.id).status == "complete"
        assert len(store.run(run.id).environment["resumed"]) == 1


def test_resume_by_run_id_and_nothing_left_to_run(tmp_path):
    first = metabench.compare(algorithms=["protonet"], out=tmp_path, **TINY)
    again = metabench.compare(resume=first.attrs["run"], out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(scores(again), scores(first))
    with pytest.raises(MetabenchError, match="option 'shots' is"):
        metabench.compare(resume=first.attrs["run"], out=tmp_path, shots=[3], progress=False)
    with pytest.raises(MetabenchError, match="no run 'nope'"):
        metabench.compare(resume="nope", out=tmp_path, progress=False)
    with pytest.raises(MetabenchError, match="no earlier run"):
        metabench.compare(algorithms=["batched"], out=tmp_path, resume=True, **TINY)


def test_failing_algorithms_end_as_failed_cells_and_the_run_goes_on(tmp_path):
    result = CliRunner().invoke(
        cli, ["compare", "-a", "boom,protonet,nanloss", *TINY_FLAGS, "--out", str(tmp_path)]
    )
    assert result.exit_code == 1, result.output
    assert "failed: boom/micro/5w1sq15/seed0: RuntimeError in meta_train_step (step 3): " \
           "boom: the algorithm broke" in result.output
    assert "second line" not in result.output
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert cells.loc["boom", "status"] == "failed" and cells.loc["boom", "steps"] == 2
    assert cells.loc["nanloss", "reason"] == "training loss is nan at step 2"
    assert cells.loc["protonet", "status"] == "ok"
    episodes = metabench.load_results(tmp_path)
    assert set(episodes["algorithm"]) == {"protonet"} and len(episodes) == 8
    assert "protonet" in result.output  # the leaderboard of the cells that finished


def test_out_of_memory_ends_the_cell_as_failed_and_the_run_goes_on(tmp_path):
    frame = metabench.compare(algorithms=["hog", "protonet", "cudahog"], out=tmp_path,
                              **{**TINY, "shots": [1]})
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert cells.loc["hog", "status"] == "failed"
    assert cells.loc["hog", "reason"].startswith(
        "out of memory (RuntimeError) in meta_train_step (step 1): ")
    assert "can't allocate memory" in cells.loc["hog", "reason"]
    assert cells.loc["cudahog", "reason"] == (
        "out of memory (OutOfMemoryError) in validation after step 4: CUDA out of memory. "
        "Tried to allocate 2.00 GiB")
    assert cells.loc["protonet", "status"] == "ok"
    assert sorted(frame.attrs["failed"]) == ["cudahog/micro/5w1sq15/seed0", "hog/micro/5w1sq15/seed0"]


def test_an_unsupported_task_type_is_a_skipped_cell(tmp_path):
    frame = metabench.compare(algorithms="protonet", datasets="sinusoid", shots=5, episodes=4,
                              budget="episodes:2", out=tmp_path, progress=False)
    assert frame.empty and frame.attrs["failed"] == []
    (cell,) = metabench.load_cells(tmp_path).itertuples()
    assert cell.status == "skipped"
    assert cell.reason == "protonet supports classification tasks, not regression (sinusoid)"


def test_bad_budget_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--budget", "weeks:2", "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: budget 'weeks:2' is not valid") and err.count("\n") == 1


@pytest.mark.parametrize(("flags", "message"), [
    (["-a", "mamll"], "unknown algorithm 'mamll'; did you mean 'maml'?"),
    (["--set", "protonet.lr=fast"], "protonet.lr='fast' is not a valid float"),
    (["--set", "maml.inner_lr=0.1", "-a", "protonet"], "--set names algorithm 'maml'"),
    (["--shots", "0"], "shots=0 is too small"),
    (["--ways", "30"], "ways=30 is larger than the 8 classes of micro's 'validation' split"),
])
def test_bad_options_fail_before_anything_runs(tmp_path, capsys, flags, message):
    args = ["compare", *TINY_FLAGS, "--out", str(tmp_path), *flags]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    if (tmp_path / "metabench.sqlite").exists():
        assert metabench.load_cells(tmp_path).empty


def test_a_foreign_results_file_is_refused_unchanged(tmp_path, capsys):
    target = tmp_path / "metabench.sqlite"
    with sqlite3.connect(target) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    db.close()
    before = target.read_bytes()
    with pytest.raises(SystemExit):
        main(["compare", "-a", "protonet", "-d", "synthetic", "--out", str(tmp_path)])
    assert "not a metabench results store" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_config_file_with_flags_overriding_it(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(
        'algorithms = ["protonet", "batched"]\ndatasets = "micro"\nbackbone = "flat"\n'
        'shots = [1]\nepisodes = 5\nbudget = "episodes:3"\nval_episodes = 2\n'
        f'out = "{tmp_path / "from-toml"}"\n[hparams.protonet]\nlr = 0.01\n'
    )
    frame = metabench.compare(config=config, algorithms="protonet", episodes=6, progress=False)
    assert set(frame["algorithm"]) == {"protonet"} and len(frame) == 6
    cells = metabench.load_cells(tmp_path / "from-toml")
    assert cells.loc[0, "hparams"]["lr"] == pytest.approx(0.01)
    bad = tmp_path / "bad.toml"
    bad.write_text("epsiodes = 3\n")
    with pytest.raises(MetabenchError, match="unknown option 'epsiodes'"):
        metabench.compare(config=bad, progress=False)


def test_export_csv_and_parquet(tmp_path, monkeypatch):
    metabench.compare(algorithms=["protonet"], out=tmp_path, **TINY)
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(tmp_path / "episodes.csv")
    assert len(exported) == 24 and "accuracy" in exported
    cells_csv = results.export(tmp_path, "csv", tmp_path / "c.csv", table="cells")
    assert json.loads(pd.read_csv(cells_csv).loc[0, "hparams"])["lr"] == pytest.approx(1e-3)
    pytest.importorskip("pyarrow")
    parquet = results.export(tmp_path, "parquet")
    assert len(pd.read_parquet(parquet)) == 24
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    with pytest.raises(MetabenchError, match="needs pyarrow"):
        results.export(tmp_path, "parquet")


def test_resume_by_path_and_retry_failed_cells(tmp_path):
    options = {**TINY, "shots": [1], "algorithms": ["protonet", "boom"]}
    first = metabench.compare(out=tmp_path, **options)
    failed = ["boom/micro/5w1sq15/seed0"]
    assert first.attrs["failed"] == failed
    target = str(tmp_path / first.attrs["run"])
    again = session.run_comparison({}, resume=target, progress=False)
    assert (again.run, again.ran, again.failed) == (first.attrs["run"], 0, failed)
    retried = session.run_comparison({}, resume=target, retry_failed=True, progress=False)
    assert (retried.ran, retried.failed) == (1, failed)
    pd.testing.assert_frame_equal(scores(retried.episodes), scores(first))


@pytest.mark.slow
def test_a_tiny_glyphs_comparison_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "cache"))  # builds glyphs afresh
    load_plugins(["metabench.data.glyphs"])
    frame = metabench.compare(algorithms=["protonet", "maml"], datasets="glyphs", shots=[1],
                              episodes=20, budget="episodes:8", val_episodes=4, val_points=2,
                              out=tmp_path / "results", progress=False)
    assert len(frame) == 2 * 20 and frame.attrs["failed"] == []
    table = leaderboard.leaderboard(frame, metabench.load_cells(tmp_path / "results"))
    assert sorted(table["algorithm"]) == ["maml", "protonet"]
    assert set(table["mark"]) <= {"", "*", "="} and (table["rank"] >= 1).all()
    assert (table["train_time_s"] > 0).all() and (table["adapt_ms"] > 0).all()


@pytest.mark.parametrize(("mean", "ci", "metric", "text"), [
    (0.4520, 0.0110, "accuracy", "45.20 ± 1.10"),
    (0.4520, float("nan"), "accuracy", "45.20"),
    (2.6991, 0.6012, "mse", "2.70 ± 0.60"),
    (0.12345, 0.00412, "mse", "0.1235 ± 0.0041"),
    (123.4, 12.0, "mse", "123 ± 12"),
    (0.5, float("nan"), "mse", "0.5"),
])
def test_scores_are_printed_to_the_precision_of_their_interval(mean, ci, metric, text):
    assert metric_named(metric).format_mean_ci(mean, ci) == text


def test_the_sweep_example_is_a_valid_config():
    from metabench.config import load_toml, make_config
    from metabench.plan import build_plan

    config = make_config(load_toml(Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"))
    assert config.backend == "ray" and config.cpus_per_cell == 2 and config.max_retries == 2
    assert len(build_plan(config).cells) == 4 * 2 * 2 * 3
