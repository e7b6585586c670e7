"""Issue 21: each preset carries its paper's protocol and numbers (sources in docs/reproduce.md),
per-setting budgets, the rl adaptation curve, and the verdict of a published value without an
interval."""

from __future__ import annotations

import json

import pytest
import torch

from metabench.budget import Budget
from metabench.config import make_config
from metabench.metrics import ACCURACY, MSE, RETURN
from metabench.plan import build_plan
from metabench.presets import Published, all_presets, departures, verdict
from metabench.protocol import EpisodeId, TaskSpec

PRESETS = all_presets()


def _hparams(name: str) -> dict[tuple[str, str], object]:
    plan = build_plan(PRESETS[name].config(name))
    return {(cell.algorithm, cell.spec.label): plan.hparams_for(cell) for cell in plan.cells}


def _published(name: str) -> dict[tuple[str, str, int | None], tuple[float, float | None]]:
    return {(p.algorithm, p.setting, p.step): (p.value, p.interval) for p in PRESETS[name].published}


def test_omniglot_presets_use_their_papers_splits():
    options = {name: PRESETS[name].compare["dataset_options"]["omniglot"]
               for name in ("snell2017-omniglot", "vinyals2016-omniglot", "finn2017-omniglot",
                            "nichol2018-omniglot", "raghu2020-omniglot")}
    assert options["snell2017-omniglot"] == {"split": "vinyals", "trainval": True, "rotations": True}
    assert options["vinyals2016-omniglot"] == options["snell2017-omniglot"]
    assert options["finn2017-omniglot"]["split"] == "shuffled"
    assert options["raghu2020-omniglot"]["split"] == "shuffled"
    assert options["nichol2018-omniglot"]["split"] == "nichol"
    for name in ("snell2017-omniglot", "vinyals2016-omniglot", "nichol2018-omniglot"):
        assert PRESETS[name].base_config(name).checkpoint == "last", name


def test_nichol_presets_carry_the_current_readme_commands_and_budgets():
    hp = _hparams("nichol2018-omniglot")
    five, twenty = hp[("reptile", "5w1s")], hp[("reptile", "20w5s")]
    assert (five.inner_lr, five.inner_steps, five.inner_batch, five.train_shots) == (1e-3, 5, 10, 10)
    assert (five.test_steps, five.test_batch, five.meta_batch_size) == (50, 5, 5)
    assert (five.outer_lr, five.outer_lr_final) == (1.0, 0.0)
    assert (twenty.inner_lr, twenty.inner_steps, twenty.inner_batch) == (5e-4, 10, 20)
    assert (twenty.train_shots, twenty.test_steps, twenty.test_batch) == (10, 50, 10)
    transductive = hp[("reptile-transductive", "5w1s")]
    assert transductive.transductive and transductive.inner_steps == five.inner_steps
    plan = build_plan(PRESETS["nichol2018-omniglot"].config("nichol2018-omniglot"))
    budgets = {cell.spec.label: plan.budget_for(cell) for cell in plan.cells}
    assert budgets["5w1s"] == budgets["5w5s"] == Budget("steps", 100000)
    assert budgets["20w1s"] == budgets["20w5s"] == Budget("steps", 200000)
    mini = _hparams("nichol2018-miniimagenet")
    one, five_shot = mini[("reptile", "5w1s")], mini[("reptile", "5w5s")]
    assert (one.inner_lr, one.inner_steps, one.inner_batch, one.train_shots) == (1e-3, 8, 10, 15)
    assert (one.test_steps, one.test_batch, five_shot.test_batch) == (50, 5, 15)
    assert mini[("reptile-transductive", "5w1s")].inner_steps == 8


def test_per_setting_budgets_scale_and_count_as_protocol():
    preset = PRESETS["nichol2018-omniglot"]
    config = preset.config("nichol2018-omniglot", scale=0.01)
    assert config.budget.label == "steps:1000" and config.to_dict()["budgets"] == {"20w": "steps:2000"}
    assert departures(config, preset, "nichol2018-omniglot") == []
    changed = make_config({"budgets": {"20w": "steps:5"}}, config)
    gaps = departures(changed, preset, "nichol2018-omniglot")
    assert "budgets 20w is 'steps:5', the paper's is 'steps:2000'" in gaps
    assert config.budget_text() == "steps:1000 (20w: steps:2000)"


def test_sinusoid_chen_and_navigation_presets_carry_the_published_tables():
    sine = _published("finn2017-sinusoid")
    assert sine == {("maml", "5shot", None): (0.67, None), ("pretrained", "5shot", None): (2.41, None)}
    hp = _hparams("finn2017-sinusoid")[("maml", "5shot")]
    assert (hp.train_shots, hp.inner_lr, hp.test_steps) == (10, 0.01, 1)
    assert PRESETS["finn2017-sinusoid"].base_config("finn2017-sinusoid").queries == 5
    chen = _published("chen2019-miniimagenet")
    assert chen[("baseline", "5w1s", None)] == (42.11, 0.71)
    assert chen[("baseline", "5w5s", None)] == (62.53, 0.69)
    assert chen[("baseline-pp", "5w1s", None)] == (48.24, 0.75)
    assert chen[("baseline-pp", "5w5s", None)] == (66.43, 0.63)
    plan = build_plan(PRESETS["chen2019-miniimagenet"].config("chen2019-miniimagenet"))
    images = {cell.spec.label: plan.budget_for(cell).amount * cell.spec.ways
              * (cell.spec.shots + cell.spec.queries) for cell in plan.cells}
    assert images["5w1s"] == images["5w5s"] == 400 * 38400  # 400 epochs either way
    nav = _published("finn2017-navigation2d")
    assert nav[("maml", "40traj", 0)] == (-40.41, 2.04)
    assert nav[("maml", "40traj", None)] == (-11.68, 1.10)
    assert nav[("maml", "40traj", 3)] == (-3.23, 0.29)
    assert nav[("pretrained", "40traj", 2)] == (-11.72, 0.84)
    assert nav[("random", "40traj", 3)] == (-46.81, 0.65)
    config = PRESETS["finn2017-navigation2d"].base_config("finn2017-navigation2d")
    assert config.curve_steps == 3 and config.episodes == 40 and config.budget.label == "steps:100"
    maml = _hparams("finn2017-navigation2d")[("maml", "40traj")]
    assert (maml.meta_batch_size, maml.train_shots, maml.inner_lr, maml.curve_inner_lr) == (20, 20, 0.5, 0.25)


@pytest.mark.parametrize(("mean", "ci", "expected"), [
    (0.989, 0.002, "reproduced"),  # 98.8 lies inside 98.7..99.1
    (0.9921, 0.0012, "above"),     # the measured interval lies above the point
    (0.980, 0.005, "below"),
])
def test_a_published_value_without_an_interval_is_read_as_a_point(mean, ci, expected):
    point = Published("protonet", "5w1s", 98.8, None, "")
    assert verdict(point, ACCURACY, mean, ci).outcome == expected
    mse = Published("maml", "5shot", 0.67, None, "")
    assert verdict(mse, MSE, 0.60, 0.05).outcome == "below"


def test_published_curve_points_are_apart_from_the_main_score():
    nav = PRESETS["finn2017-navigation2d"]
    assert nav.published_for("maml", "40traj").value == -11.68
    assert [p.step for p in nav.published_curve("maml", "40traj")] == [0, 2, 3]
    assert verdict(nav.published_for("maml", "40traj"), RETURN, -12.0, 1.0).outcome == "reproduced"


class _Fixed:
    """A fixed linear policy whose adaptation adds a known offset to the mean head's bias:
    the curve must score the unadapted policy first, then each continued adaptation."""

    def __init__(self, env) -> None:
        from metabench.rl.rollout import BackbonePolicy

        torch.manual_seed(0)
        self.policy = BackbonePolicy(torch.nn.Linear(env.observation_dim, 8), env.action_dim)
        self.calls: list[tuple[int, bool]] = []
        self.supports: list[torch.Tensor] = []

    def adapt_policy(self, support, params=None):
        start = params if params is not None else {n: p.detach() for n, p in self.policy.named_parameters()}
        self.calls.append((int(support.returns.numel()), params is not None))
        self.supports.append(support.returns.clone())
        return {n: (v + 0.01 if n == "head.bias" else v) for n, v in start.items()}


def test_the_adaptation_curve_scores_step_k_after_k_updates_on_fresh_trajectories():
    from metabench.protocol import Episode
    from metabench.rl.envs import Navigation2D
    from metabench.rl.protocol import adaptation_curve, adapted_return, task_rollout

    env = Navigation2D()
    algorithm = _Fixed(env)
    goal = torch.tensor([[0.3, -0.2]])
    episode = Episode(goal, torch.zeros(1), goal, torch.zeros(1), (),
                      EpisodeId("navigation2d", "test", 0, 7))
    spec = TaskSpec(1, 6, 5, task_type="rl")
    curve = adaptation_curve(algorithm, episode, spec, env, 3)
    assert len(curve) == 4 and algorithm.calls == [(6, False), (6, True), (6, True)]
    first, second, third = algorithm.supports  # fresh trajectories at every step
    assert not torch.equal(first, second) and not torch.equal(second, third)
    weights = {n: p.detach() for n, p in algorithm.policy.named_parameters()}
    by_hand = []
    for k in range(4):
        shifted = {n: (v + 0.01 * k if n == "head.bias" else v) for n, v in weights.items()}
        by_hand.append(float(task_rollout(env, algorithm.policy, episode, 5, "query",
                                          shifted if k else None).returns.mean()))
    assert curve == pytest.approx(by_hand, abs=1e-5)
    assert curve[1] == pytest.approx(adapted_return(_Fixed(env), episode, spec, env), abs=1e-6)


def test_a_navigation_run_stores_the_curve_and_the_leaderboard_shows_it(tmp_path):
    import metabench

    frame = metabench.compare(algorithms=["maml", "random"], datasets=["navigation2d"], shots=[3],
                              queries=3, episodes=4, budget="steps:2", out=tmp_path, progress=False,
                              curve_steps=2, val_episodes=2, val_points=1)
    curves = [json.loads(text) for text in frame["curve"]]
    assert all(len(c) == 3 for c in curves)
    assert [c[1] for c in curves] == pytest.approx(list(frame["avg_return"]), abs=1e-5)
    board = metabench.leaderboard(tmp_path)
    assert board["curve"].str.count(" / ").eq(2).all()
    from metabench.reports.leaderboard import build_report_data
    from metabench.reports.plot_kinds import adaptation_figure

    figure = adaptation_figure(build_report_data([tmp_path]))
    assert figure is not None and len(figure.axes[0].get_lines()) == 2
    plain = metabench.compare(algorithms=["maml", "random"], datasets=["navigation2d"], shots=[3],
                              queries=3, episodes=4, budget="steps:2", out=tmp_path / "plain",
                              progress=False, val_episodes=2, val_points=1)
    assert list(plain["avg_return"]) == pytest.approx(list(frame["avg_return"]), abs=1e-5)
    assert plain["curve"].isna().all()


def test_halfcheetah_presets_carry_the_released_curves_and_are_never_comparable():
    import pandas as pd

    from metabench.reproduction import comparisons_of_table

    vel, direc = _published("finn2017-halfcheetah-vel"), _published("finn2017-halfcheetah-dir")
    assert [vel[("maml", "20traj", s)][0] for s in (0, None, 2, 3)] == [-129.53, -78.57, -66.62, -60.78]
    assert [vel[("pretrained", "20traj", s)][0] for s in (0, None, 2, 3)] == [-158.0, -135.39, -128.47,
                                                                               -133.61]
    assert [vel[("random", "20traj", s)][0] for s in (0, None, 2, 3)] == [-254.83, -254.33, -246.79,
                                                                           -230.83]
    assert [direc[("maml", "20traj", s)][0] for s in (0, None, 2, 3)] == [-50.69, 293.19, 313.48, 315.65]
    name = "finn2017-halfcheetah-vel"
    preset = PRESETS[name]
    config = preset.config(name)
    table = pd.DataFrame([{"algorithm": "maml", "task_type": "rl", "ways": 1, "shots": 20,
                           "dataset": "halfcheetah-vel", "test_dataset": "halfcheetah-vel",
                           "metric": "avg_return", "mean": -78.0, "ci": 5.0,
                           "curve_mean": [-130.0, -78.0, -66.0, -61.0], "curve_ci": [8.0] * 4}])
    rows = comparisons_of_table(table, config, preset, name)
    assert [row.step for row in rows] == [0, None, 2, 3]
    assert all(row.verdict.outcome == "not comparable" for row in rows)
    assert "Gymnasium's HalfCheetah-v5 model" in rows[1].verdict.reason
    assert rows[1].verdict.position == "overlapping"
