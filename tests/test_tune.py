"""metabench tune: search spaces from plugins, seeded trials, validation only, resume, and
compare --tuned (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench import registry
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.plugins import get_plugin_manager
from metabench.search_space import (
    Choice,
    IntUniform,
    LogUniform,
    Uniform,
    check_space,
    parse_distribution,
)
from metabench.store import Store
from metabench.trials import TrialRunner
from metabench.tuning import TuningInterrupted
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

pytestmark = pytest.mark.usefixtures("compare_plugin")

# Two algorithms on the test plugin's tiny data set and backbone: seconds per tuning.
TINY = {"algorithms": "protonet,fomaml", "datasets": "micro", "backbone": "flat", "shots": 1,
        "queries": 5, "val_episodes": 4, "val_points": 2, "progress": False}
TRIALS = {"trials": 3, "trial_budget": "episodes:8"}


def trial_table(frame: pd.DataFrame) -> pd.DataFrame:
    """What decides a tuning: each trial's hyperparameters, status and validation value."""
    columns = ["study", "number", "seed", "status", "value"]
    table = frame[columns].assign(params=[repr(sorted(p.items())) for p in frame["params"]])
    return table.sort_values(["study", "number", "seed"]).reset_index(drop=True)


# --- search spaces ------------------------------------------------------------------------------

def test_built_in_spaces_are_read_and_valid():
    algorithms = registry.get_algorithms()
    for name in ("maml", "fomaml", "protonet", "reptile", "anil", "metasgd", "matchingnet",
                 "baseline"):
        entry = algorithms[name]
        space = check_space(name, entry.options["search_space"], entry.defaults)
        assert space, name
    assert algorithms["fomaml"].options["search_space"]["inner_lr"] == LogUniform(0.005, 1.0)
    assert algorithms["reptile"].options["search_space"]["inner_steps"] == IntUniform(1, 10)


@pytest.mark.parametrize(("space", "message"), [
    ({"inner_learning_rate": LogUniform(0.01, 1.0)}, "no hyperparameter 'inner_learning_rate'"),
    ({"lr": LogUniform(1.0, 0.01)}, "empty or inverted range"),
    ({"lr": Uniform(0.5, 0.5)}, "empty or inverted range"),
    ({"lr": LogUniform(0.0, 1.0)}, "a log range needs LOW > 0"),
    ({"meta_batch_size": Uniform(1.0, 8.0)}, "is a int field; uniform 1..8 cannot give one"),
    ({"meta_batch_size": Choice("big", 4)}, "'big' is not a valid int"),
    ({"channels_last": IntUniform(0, 1)}, "is a bool field"),
    ({"lr": Choice()}, "choice has no values"),
    ({"lr": 0.1}, "is not a distribution"),
])
def test_bad_spaces_name_the_entry_and_what_was_expected(space, message):
    with pytest.raises(MetabenchError, match=message) as error:
        check_space("protonet", space, ProtoNetConfig())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("log:0.01:1", LogUniform(0.01, 1.0)), ("uniform:0.1:0.9", Uniform(0.1, 0.9)),
    ("int:1:10", IntUniform(1, 10)), ("logint:1:64", IntUniform(1, 64, log=True)),
    ("choice:4,8", Choice(4, 8)), ("choice:true,false", Choice(True, False)), ("off", None),
])
def test_ranges_parse_from_text(text, expected):
    assert parse_distribution("--space x.y", text) == expected


def test_a_bad_range_on_the_command_line_is_one_line(run_cli, tmp_path):
    for space, message in [("protonet.lr=log:1", "is not a search range"),
                           ("protonet.lr=log:0.1:0.01", "empty or inverted range"),
                           ("protonet.nope=log:0.1:1", "no hyperparameter 'nope'"),
                           ("maml.inner_lr=log:0.1:1", "names algorithm 'maml', which is not tuned"),
                           ("protonet.lr", "is not of the form ALGORITHM.NAME=RANGE")]:
        result = run_cli("tune", "-a", "protonet", "-d", "micro", "--backbone", "flat",
                         "--space", space, "--out", str(tmp_path), "--no-progress")
        assert result.code == 2, result.err
        assert message in result.err and result.err.count("\n") == 1, result.err
        assert "Traceback" not in result.err
    assert not (tmp_path / "metabench.sqlite").exists()


@dataclass(frozen=True)
class SpacedConfig:
    lr: float = 1e-3
    channels_last: bool = True


class _SpacePlugin:
    """A third-party algorithm with a space that is wrong for its dataclass."""

    @metabench.hookimpl
    def register_algorithms(self, register: metabench.RegisterAlgorithm) -> None:
        register("spaced", ProtoNet, task_types={"classification"}, defaults=ProtoNetConfig(),
                 search_space={"lr": LogUniform(1e-4, 1e-2), "depth": IntUniform(1, 4)})
        register("spaceless", ProtoNet, task_types={"classification"}, defaults=ProtoNetConfig())


def test_a_plugins_space_is_checked_when_tuning_starts(tmp_path):
    get_plugin_manager().register(_SpacePlugin(), name="space_plugin")
    with pytest.raises(MetabenchError, match=r"\(spaced\) has no hyperparameter 'depth'"):
        metabench.tune(**{**TINY, "algorithms": "spaced"}, out=tmp_path, **TRIALS)
    # The user can drop the bad entry; an algorithm without a space needs one given.
    out = metabench.tune(**{**TINY, "algorithms": "spaced"}, out=tmp_path, trials=1,
                         trial_budget="episodes:4", space=["spaced.depth=off"])
    assert set(out.trials["params"].iloc[0]) == {"lr"}
    with pytest.raises(MetabenchError, match="nothing to tune for spaceless: its plugin declares"):
        metabench.tune(**{**TINY, "algorithms": "spaceless"}, out=tmp_path, **TRIALS)


# --- trials -------------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_trials(tmp_path):
    first = metabench.tune(**TINY, out=tmp_path / "a", seed=3, **TRIALS)
    second = metabench.tune(**TINY, out=tmp_path / "b", seed=3, **TRIALS)
    pd.testing.assert_frame_equal(trial_table(first.trials), trial_table(second.trials))
    assert len(first.trials) == 2 * 3 and set(first.trials["status"]) == {"complete"}
    other = metabench.tune(**TINY, out=tmp_path / "c", seed=4, **TRIALS)
    assert not trial_table(other.trials)["params"].equals(trial_table(first.trials)["params"])
    # Trial 0 runs the starting values: protonet's defaults lie in its space.
    start = first.trials[(first.trials["algorithm"] == "protonet") & (first.trials["number"] == 0)]
    assert start["params"].iloc[0] == {"lr": 1e-3, "meta_batch_size": 1}


def test_a_value_set_by_hand_is_not_tuned(tmp_path):
    out = metabench.tune(**{**TINY, "algorithms": "protonet"}, out=tmp_path, trials=2,
                         trial_budget="episodes:4", hparams=["protonet.meta_batch_size=1"])
    assert all(set(params) == {"lr"} for params in out.trials["params"])


def test_tuning_never_builds_a_test_episode(tmp_path, monkeypatch):
    splits: list[str] = []
    original = EpisodeSampler.__init__

    def recording(self, dataset, split, *args, **kwargs):
        splits.append(split)
        original(self, dataset, split, *args, **kwargs)

    monkeypatch.setattr(EpisodeSampler, "__init__", recording)
    served: list[str] = []
    batch = EpisodeSampler.batch

    def serving(self, indices):
        result = batch(self, indices)
        served.extend({identity.split for identity in result.identities})
        return result

    monkeypatch.setattr(EpisodeSampler, "batch", serving)
    metabench.tune(**TINY, out=tmp_path, **TRIALS)
    assert "test" not in splits and "test" not in served
    assert {"train", "validation"} <= set(served)


def test_an_interrupted_tuning_resumes_without_rerunning_stored_trials(tmp_path, monkeypatch):
    whole = metabench.tune(**TINY, out=tmp_path / "whole", **TRIALS)
    saved = Store.save_trial
    calls = {"saved": 0, "run": 0}

    def stop_after_three(self, tuning, row):
        saved(self, tuning, row)
        calls["saved"] += 1
        if calls["saved"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "save_trial", stop_after_three)
    with pytest.raises(TuningInterrupted) as stop:
        metabench.tune(**TINY, out=tmp_path / "cut", **TRIALS)
    monkeypatch.setattr(Store, "save_trial", saved)
    with Store.open_existing(tmp_path / "cut") as store:
        assert store.tuning(stop.value.tuning).status == "interrupted"
        assert len(store.trials_frame(stop.value.tuning)) == 3

    runner_call = TrialRunner.__call__

    def counting(self, cell, context):
        calls["run"] += 1
        return runner_call(self, cell, context)

    monkeypatch.setattr(TrialRunner, "__call__", counting)
    resumed = metabench.tune(**TINY, out=tmp_path / "cut", resume=True, **TRIALS)
    assert resumed.tuning == stop.value.tuning and calls["run"] == 6 - 3
    pd.testing.assert_frame_equal(trial_table(resumed.trials), trial_table(whole.trials))
    with Store.open_existing(tmp_path / "cut") as store:
        assert store.tuning(resumed.tuning).status == "complete"


def test_pruning_stops_trials_below_the_median(tmp_path):
    out = metabench.tune(**{**TINY, "algorithms": "protonet", "val_points": 4}, out=tmp_path,
                         trials=10, trial_budget="episodes:8",
                         space=["protonet.lr=log:0.000001:0.1"])
    trials = out.trials
    pruned = trials[trials["status"] == "pruned"]
    assert len(pruned) >= 1, trials[["number", "status", "value"]]
    assert (pruned["number"] >= 4).all()  # none before four trials finished
    assert pruned["reason"].str.contains("below the median").all()
    assert all(len(curve) < 4 for curve in pruned["curve"])
    off = metabench.tune(**{**TINY, "algorithms": "protonet", "val_points": 4},
                         out=tmp_path / "off", trials=10, trial_budget="episodes:8",
                         space=["protonet.lr=log:0.000001:0.1"], prune=False)
    assert set(off.trials["status"]) == {"complete"}


# --- compare --tuned ----------------------------------------------------------------------------

def test_compare_tuned_runs_with_the_selected_values_and_says_so(tmp_path, run_cli):
    tuning = metabench.tune(**TINY, out=tmp_path, **TRIALS)
    best = tuning.best.set_index("algorithm")
    options = {**TINY, "budget": "episodes:8", "episodes": 10}
    frame = metabench.compare(**options, out=tmp_path, tuned=True)
    cells = metabench.load_cells(tmp_path, run=frame.attrs["run"]).set_index("algorithm")
    for algorithm in ("protonet", "fomaml"):
        selected = best.loc[algorithm, "params"]
        stored = cells.loc[algorithm, "hparams"]
        assert {name: stored[name] for name in selected} == pytest.approx(selected)
        assert cells.loc[algorithm, "protocol"]["hparams"] == (
            f"tuned (3 trials x episodes:8, tuning {tuning.tuning})")
    board = metabench.leaderboard(tmp_path, run=frame.attrs["run"])
    assert set(board["hparams"]) == {f"tuned (3 trials x episodes:8, tuning {tuning.tuning})"}

    # Untuned and hand-set rows say so too; hand-set values win over tuned ones.
    plain = metabench.compare(**options, out=tmp_path / "plain")
    assert set(metabench.leaderboard(tmp_path / "plain")["hparams"]) == {"defaults"}
    mixed = metabench.compare(**options, out=tmp_path, tuned=tuning.tuning,
                              hparams=["protonet.lr=0.005"])
    rows = metabench.leaderboard(tmp_path, run=mixed.attrs["run"]).set_index("algorithm")
    assert rows.loc["protonet", "hparams"].endswith("; set by hand: lr")
    mixed_cells = metabench.load_cells(tmp_path, run=mixed.attrs["run"]).set_index("algorithm")
    assert mixed_cells.loc["protonet", "hparams"]["lr"] == 0.005
    assert plain.attrs["failed"] == [] and mixed.attrs["failed"] == []

    shown = run_cli("leaderboard", str(tmp_path), "--run", frame.attrs["run"])
    assert shown.code == 0 and "tuned (3 trials" in shown.out
    html = metabench.report(tmp_path, run=frame.attrs["run"]).read_text()
    assert "<th>hyperparameters</th>" in html and f"tuning {tuning.tuning})" in html
    reruns = [line for line in board.attrs["notes"] if line.startswith("reproduce: ")]
    assert reruns and f"--tuned {tuning.tuning}" in reruns[0]


def test_compare_tuned_without_a_matching_tuning_is_one_line(tmp_path, run_cli):
    metabench.tune(**{**TINY, "algorithms": "protonet"}, out=tmp_path, trials=1,
                   trial_budget="episodes:4")
    result = run_cli("compare", "-a", "protonet,fomaml", "-d", "micro", "--backbone", "flat",
                     "--shots", "1", "--tuned", "--out", str(tmp_path), "--no-progress")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "no tuning in" in result.err and "fomaml on micro 5w1s" in result.err
    result = run_cli("compare", "-a", "protonet", "-d", "micro", "--backbone", "flat",
                     "--shots", "1", "--tuned", "tune-nope", "--out", str(tmp_path),
                     "--no-progress")
    assert result.code == 2 and "no tuning 'tune-nope'" in result.err


def test_tune_command_prints_the_selection(run_cli, tmp_path):
    result = run_cli("tune", "-a", "protonet", "-d", "micro", "--backbone", "flat", "--shots",
                     "1", "--queries", "5", "--trials", "2", "--trial-budget", "episodes:4",
                     "--val-episodes", "3", "--val-points", "2", "--out", str(tmp_path),
                     "--no-progress")
    assert result.code == 0, result.err
    assert "2 trials x episodes:4" in result.out and "protonet" in result.out
    assert "micro 5w1s" in result.out and "metabench compare --tuned" in result.out
    tuning = result.out.split("tuning ")[1].split()[0]
    again = run_cli("tune", "--resume", tuning, "--out", str(tmp_path), "--no-progress")
    assert again.code == 0 and "(0 trial cells run now)" in again.out, again.err


def test_tuning_options_from_toml(tmp_path):
    config = tmp_path / "tune.toml"
    config.write_text('algorithms = ["protonet"]\ndatasets = ["micro"]\nbackbone = "flat"\n'
                      'shots = [1]\nqueries = 5\nval_episodes = 3\nval_points = 2\n'
                      '[tune]\ntrials = 2\ntrial_budget = "episodes:4"\n'
                      '[tune.space.protonet]\nlr = "log:0.0001:0.01"\nmeta_batch_size = "off"\n')
    out = metabench.tune(config=config, out=tmp_path, progress=False)
    assert out.settings.trials == 2 and len(out.trials) == 2
    assert all(set(params) == {"lr"} for params in out.trials["params"])
