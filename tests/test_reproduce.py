"""Paper presets and ``metabench reproduce``: plans, verdicts, listing, running."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from preset_plugin import PUBLISHED, TEST_PRESET, preset_plugin  # noqa: F401 (fixture)

from metabench.budget import Budget
from metabench.cell import Cell
from metabench.config import make_config
from metabench.errors import MetabenchError
from metabench.metrics import ACCURACY, MSE
from metabench.plan import build_plan
from metabench.presets import Published, all_presets, departures, verdict
from metabench.protocol import TaskSpec
from metabench.records import CellResult, EpisodeRow
from metabench.reports.leaderboard import build_report_data, leaderboard
from metabench.reproduction import comparisons_of_table
from metabench.rerun import compare_command
from metabench.store import Store

BUILTIN = ("finn2017-omniglot", "finn2017-sinusoid", "finn2017-navigation2d", "finn2017-halfcheetah-vel",
           "finn2017-halfcheetah-dir", "snell2017-omniglot",
           "nichol2018-omniglot", "raghu2020-omniglot", "vinyals2016-omniglot",
           "finn2017-miniimagenet", "snell2017-miniimagenet", "nichol2018-miniimagenet",
           "li2017-miniimagenet", "raghu2020-miniimagenet", "chen2019-miniimagenet")


def test_every_builtin_preset_builds_a_valid_plan():
    presets = all_presets()
    assert set(BUILTIN) <= set(presets)
    for name in BUILTIN:
        preset = presets[name]
        plan = build_plan(preset.config(name))
        labels = {cell.spec.label for cell in plan.cells}
        assert plan.cells and all(not plan.skip_reason(cell) for cell in plan.cells), name
        for row in preset.published:
            assert row.algorithm in plan.config.algorithms, (name, row)
            assert row.setting in labels, (name, row)
            assert row.source, (name, row)
        assert plan.config.preset == name and preset.source and preset.notes


def test_presets_set_the_papers_hyperparameters_per_setting():
    finn = all_presets()["finn2017-omniglot"]
    plan = build_plan(finn.config("finn2017-omniglot"))
    by_setting = {cell.spec.label: plan.hparams_for(cell) for cell in plan.cells
                  if cell.algorithm == "maml"}
    assert by_setting["5w1s"].inner_lr == 0.4 and by_setting["5w1s"].meta_batch_size == 32
    assert by_setting["5w1s"].test_steps == 3 and by_setting["20w5s"].test_steps == 5
    assert by_setting["20w1s"].inner_lr == 0.1 and by_setting["20w1s"].train_steps == 5
    assert plan.config.checkpoint == "last" and plan.budget == Budget("steps", 60000)
    reptile = all_presets()["nichol2018-omniglot"]
    plan = build_plan(reptile.config("nichol2018-omniglot"))
    hparams = {(c.algorithm, c.spec.label): plan.hparams_for(c) for c in plan.cells}
    assert plan.entry_of("reptile-transductive") == "reptile"
    assert hparams[("reptile", "5w1s")].transductive is False
    assert hparams[("reptile-transductive", "5w1s")].transductive is True
    assert hparams[("reptile-transductive", "20w5s")].inner_batch == 20


def test_scale_and_only_narrow_the_preset():
    preset = all_presets()["snell2017-omniglot"]
    config = preset.config("snell2017-omniglot", scale=0.05, only="protonet/5w1s")
    assert config.budget.label == "episodes:2000" and config.scale == 0.05
    assert config.ways == (5,) and config.shots == (1,) and config.algorithms == ("protonet",)
    for bad, message in (("maml/5w1s", "algorithm 'maml' is not in this preset"),
                         ("protonet/7w1s", "setting '7w1s' is not in this preset"),
                         ("protonet/five", "'five' is not a setting")):
        with pytest.raises(MetabenchError, match=message):
            preset.config("snell2017-omniglot", only=bad)


@pytest.mark.parametrize(("mean", "ci", "expected"), [
    (0.505, 0.01, "reproduced"),   # inside
    (0.47, 0.015, "reproduced"),   # intervals touch: 47 + 1.5 > 48
    (0.44, 0.01, "below"),
    (0.56, 0.01, "above"),
])
def test_verdicts_read_interval_overlap(mean, ci, expected):
    assert verdict(PUBLISHED, ACCURACY, mean, ci).outcome == expected


def test_verdicts_for_mse_and_missing_intervals():
    mse = Published("maml", "5shot", 1.13, 0.18, "unknown")
    assert verdict(mse, MSE, 1.0, 0.1).outcome == "reproduced"
    assert verdict(mse, MSE, 0.5, 0.1).outcome == "below"  # lower MSE: numerically below
    bare = Published("protonet", "5w1s", 98.8, None, "")
    assert verdict(bare, ACCURACY, 0.985, 0.005).outcome == "reproduced"
    assert verdict(bare, ACCURACY, 0.97, 0.005).outcome == "below"
    scaled = verdict(PUBLISHED, ACCURACY, 0.30, 0.01, scale=0.05)
    assert scaled.outcome == "not comparable" and scaled.position == "below"
    assert scaled.text() == ("not comparable: at 5% of the paper's budget (--scale 0.05) "
                             "(measured below)")
    gone = verdict(PUBLISHED, ACCURACY, 0.5, 0.01, departures=["split is 'lake'"])
    assert gone.outcome == "not comparable" and gone.text() == (
        "not comparable: split is 'lake' (the intervals overlap)")


def hand_made_run(tmp_path, config, accuracy: np.ndarray, run_id: str = "r1") -> pd.DataFrame:
    """A store holding one protonet cell with the given per-episode accuracies."""
    cell = Cell("protonet", "micro", TaskSpec(5, 1, 5), 0, "flat")
    result = CellResult(cell=cell, budget=config.budget.label, device="cpu", steps=6,
                        protocol={"checkpoint": "best on validation"},
                        episodes=[EpisodeRow(i, float(a), None, 1.0)
                                  for i, a in enumerate(accuracy)])
    with Store.open(tmp_path) as store:
        run = store.create_run(run_id, config.fingerprint(), config.to_dict(), {})
        store.save_cell(run, result.row(), result.episodes)
        return leaderboard(store.episodes_frame(run), store.cells_frame(run))


def accuracies(mean: float, n: int = 400) -> np.ndarray:
    # Half the episodes a little above, half a little below: a narrow interval at ``mean``.
    return np.where(np.arange(n) % 2 == 0, mean + 0.02, mean - 0.02)


@pytest.mark.parametrize(("mean", "scale", "options", "expected"), [
    (0.50, 1.0, {}, "reproduced"),
    (0.40, 1.0, {}, "below"),
    (0.62, 1.0, {}, "above"),
    (0.40, 0.05, {}, "not comparable: at 5% of the paper's budget"),
    (0.50, 1.0, {"dataset_options": {"micro": {"noise": 0.1}}},
     "not comparable: dataset_options micro.noise is 0.1, the paper's is 0.3"),
    (0.50, 1.0, {"hparams": ["protonet.lr=0.1"]}, "not comparable: hparams protonet.lr is"),
])
def test_the_verdict_of_a_hand_made_store(tmp_path, preset_plugin, mean, scale, options,  # noqa: F811
                                          expected):
    config = TEST_PRESET.config("tester2026-micro", scale=scale, options=options)
    table = hand_made_run(tmp_path, config, accuracies(mean))
    rows = comparisons_of_table(table, config, TEST_PRESET, "tester2026-micro")
    assert len(rows) == 1 and rows[0].verdict.text().startswith(expected)
    assert rows[0].difference == pytest.approx(100 * mean - 50.0)


def test_free_options_do_not_break_comparability():
    config = TEST_PRESET.config("tester2026-micro", options={"episodes": 100, "seeds": [1, 2]})
    assert departures(config, TEST_PRESET, "tester2026-micro") == []
    other = dataclasses.replace(config, queries=15)
    assert departures(other, TEST_PRESET, "tester2026-micro") == [
        "queries is 15, the paper's is 5"]


def test_the_leaderboard_shows_the_published_column(tmp_path, preset_plugin):  # noqa: F811
    config = TEST_PRESET.config("tester2026-micro")
    hand_made_run(tmp_path, config, accuracies(0.5))
    data = build_report_data([tmp_path])
    assert list(data.table["published"]) == ["50 ± 2 (95% CI)"]


def test_a_plugin_preset_is_listed_and_runs(run_cli, tmp_path, preset_plugin):  # noqa: F811
    listed = run_cli("--plugin", "preset_plugin", "reproduce", "--json")
    assert listed.code == 0, listed.err
    entry = {row["name"]: row for row in json.loads(listed.out)}["tester2026-micro"]
    assert entry["published"][0]["value"] == 50.0 and entry["budget"] == "steps:6"
    result = run_cli("--plugin", "preset_plugin", "--plugin", "test_compare_plugin",
                     "reproduce", "tester2026-micro", "--out", str(tmp_path), "--no-progress",
                     "--no-report")
    assert result.code == 0, result.err
    assert "estimated wall time on this device" in result.out
    assert "at --scale 1" in result.out
    assert "Tester et al. 2026, Table 1" in result.out
    line = next(line for line in result.out.splitlines() if "│ 5w1s" in line)
    assert "protonet" in line and "50 ± 2 (95% CI)" in line
    assert any(word in line for word in ("reproduced", "below", "above"))
    with Store.open_existing(tmp_path) as store:
        run = store.runs()[-1]
        cells = store.cells_frame(run.id)
    assert run.config["preset"] == "tester2026-micro" and run.config["budget"] == "steps:6"
    assert list(cells["steps"]) == [6]
    assert compare_command(run.config) == (
        "metabench --plugin preset_plugin --plugin test_compare_plugin reproduce "
        "tester2026-micro")
    again = run_cli("--plugin", "preset_plugin", "--plugin", "test_compare_plugin",
                    "reproduce", "tester2026-micro", "--out", str(tmp_path), "--no-progress",
                    "--no-report", "--no-estimate", "--resume", "--json")
    assert again.code == 0, again.err
    assert "(0 cells run now)" not in again.out  # stdout holds the JSON rows only
    (row,) = json.loads(again.out)
    assert row["algorithm"] == "protonet" and row["published"] == 50.0
    assert row["verdict"] in ("reproduced", "below", "above") and row["scale"] == 1.0
    with Store.open_existing(tmp_path) as store:
        assert len(store.runs()) == 1  # resumed, not run again


def test_reproduce_of_an_unknown_preset_is_one_line(run_cli):
    result = run_cli("reproduce", "finn2071-omniglot")
    assert result.code == 2
    assert result.err.strip().startswith("error: unknown preset 'finn2071-omniglot'")
    assert "finn2017-omniglot" in result.err and "Traceback" not in result.err


def test_a_bad_scale_is_one_line(run_cli):
    result = run_cli("reproduce", "snell2017-omniglot", "--scale", "0", "--dry-run")
    assert result.code == 2 and "scale=0.0 must be positive" in result.err


def test_a_steps_budget_runs_that_many_steps_and_the_last_checkpoint_is_recorded(
        tmp_path, preset_plugin):  # noqa: F811
    import metabench

    metabench.compare(
        algorithms=["protonet"], datasets=["micro"], backbone="flat", shots=[1], queries=5,
        episodes=8, budget="steps:5", val_episodes=3, val_points=2, checkpoint="last",
        out=str(tmp_path), progress=False)
    cell = metabench.load_cells(tmp_path).iloc[0]
    assert cell["steps"] == 5 and cell["best_step"] == 5
    assert cell["protocol"]["checkpoint"] == "last"
    assert cell["protocol"]["batch_norm"] == "none"  # the flat backbone has no batch norm


def test_only_keeps_the_kept_algorithms_hyperparameters_and_stays_comparable():
    preset = all_presets()["nichol2018-omniglot"]
    config = preset.config("nichol2018-omniglot", scale=0.01, only="reptile/5w1s")
    assert config.algorithms == ("reptile",)
    assert all(key.partition("@")[0] == "reptile" for key in config.hparams)
    build_plan(config)
    assert departures(config, preset, "nichol2018-omniglot") == []


def test_the_estimate_scales_a_timed_probe_to_the_budget(preset_plugin):  # noqa: F811
    from metabench.estimate import estimate_run, format_duration
    from metabench.session import prepare

    config = TEST_PRESET.config("tester2026-micro", scale=0.5)
    probed = []
    estimate = estimate_run(prepare(config), lambda cell: Budget("steps", 3000), probed.append)
    assert [cell.algorithm for cell in probed] == ["protonet"] and estimate.cells == 1
    assert 0 < estimate.seconds < estimate.reference_seconds
    assert np.isfinite(estimate.reference_seconds)
    assert format_duration(45) == "45 s" and format_duration(5400) == "1.5 h"
    assert format_duration(float("nan")) == "unknown"


def test_the_new_protocol_options_come_from_toml(tmp_path):
    from metabench.session import configure

    path = tmp_path / "paper.toml"
    path.write_text('''
algorithms = ["reptile", "reptile-t"]
datasets = ["glyphs"]
test_dataset = "omniglot"
checkpoint = "last"
budget = "steps:100"
[variants]
reptile-t = "reptile"
[dataset_options.omniglot]
rotations = true
[hparams."reptile-t"]
transductive = true
[hparams."reptile@20w"]
inner_steps = 7
''')
    config = configure({"ways": [5, 20]}, path)
    assert config.test_dataset == "omniglot" and config.checkpoint == "last"
    assert config.variants == {"reptile-t": "reptile"}
    assert config.dataset_options == {"omniglot": {"rotations": True}}
    plan = build_plan(config)
    hparams = {(c.algorithm, c.spec.label): plan.hparams_for(c) for c in plan.cells}
    assert hparams[("reptile", "20w1s")].inner_steps == 7
    assert hparams[("reptile", "5w1s")].inner_steps != 7
    assert hparams[("reptile-t", "5w1s")].transductive is True
    assert {c.test_dataset for c in plan.cells} == {"omniglot"}


@pytest.mark.parametrize(("options", "message"), [
    ({"hparams": ["maml@7x.inner_lr=0.1"]}, "'7x' is not a setting"),
    ({"variants": ["bad=maml"], "algorithms": ["bad", "nosuch"]}, "unknown algorithm 'nosuch'"),
    ({"variants": ["x@y=maml"]}, "variant label 'x@y' may not contain"),
    ({"checkpoint": "first"}, "checkpoint='first' is not known; expected best or last"),
    ({"budget": "steps:0"}, "budget 'steps:0' is not valid"),
])
def test_bad_protocol_options_are_one_line_errors(options, message):
    with pytest.raises(MetabenchError, match=message):
        build_plan(make_config({"algorithms": ["maml"], **options}))


def test_the_python_api_reproduces(tmp_path, preset_plugin):  # noqa: F811
    import metabench
    import metabench.reproduction  # the module must not shadow the function

    result = metabench.reproduce("tester2026-micro", options={"out": str(tmp_path)},
                                 progress=False)
    frame = result.frame()
    assert list(frame["algorithm"]) == ["protonet"] and frame.loc[0, "published"] == 50.0
    assert frame.loc[0, "verdict"] in ("reproduced", "below", "above")
    assert result.outcome.config.preset == "tester2026-micro"
