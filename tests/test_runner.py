"""The plan, the budget and run_cell: fairness, best-on-validation weights, failures, hooks."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench import evaluation
from metabench.budget import Budget
from metabench.config import make_config
from metabench.errors import MetabenchError
from metabench.evaluation import EVAL_CHUNK, episode_scores
from metabench.plan import build_plan
from metabench.plugins import get_plugin_manager
from metabench.protocol import TaskSpec
from metabench.runner import RunContext, build_algorithm, numeric_metrics, run_cell
from metabench.session import build_datasets
from metabench.store import Store
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

pytestmark = pytest.mark.usefixtures("compare_plugin")

TINY = {"datasets": "micro", "backbone": "flat", "shots": [1], "episodes": 10,
        "budget": "episodes:8", "val_episodes": 4, "val_points": 2}
SEEN: dict[str, list[str]] = {}
PROGRESS_REPORTED: list[float] = []


class Saboteur(ProtoNet):
    """Learns normally for 4 steps, then breaks: its predictions become all wrong."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: ProtoNetConfig) -> None:
        super().__init__(setup, hparams)
        self.steps = 0

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        self.steps += 1
        return super().meta_train_step(batch)

    def predict(self, episode: metabench.Episode) -> torch.Tensor:
        if self.steps > 4:
            wrong = (episode.query_y + 1) % 5
            return F.one_hot(wrong, 5).float() * 10
        return super().predict(episode)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = state["steps"]


class Recorder(ProtoNet):
    """Records a digest of every episode it is asked to predict."""

    name = "recorder"

    def predict(self, episode: metabench.Episode) -> torch.Tensor:
        data = torch.cat([episode.support_x.flatten(), episode.query_x.flatten()])
        SEEN.setdefault(self.name, []).append(hashlib.sha1(data.numpy().tobytes()).hexdigest())
        return super().predict(episode)


class Recorder2(Recorder):
    name = "recorder2"


class WrongShape(ProtoNet):
    """Returns one logit too many."""

    def predict(self, episode: metabench.Episode) -> torch.Tensor:
        return torch.zeros(episode.query_y.shape[0], 6)


class ProgressWatcher(ProtoNet):
    """Notes the budget progress the runner reports before each step."""

    def set_budget_progress(self, fraction: float) -> None:
        PROGRESS_REPORTED.append(fraction)


class Observer:
    """Watches the run through the hooks."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []

    @metabench.hookimpl
    def register_algorithms(self, register) -> None:
        config = ProtoNetConfig()
        for name, factory in (("saboteur", Saboteur), ("recorder", Recorder),
                              ("recorder2", Recorder2), ("wrongshape", WrongShape),
                              ("progresswatcher", ProgressWatcher)):
            register(name, factory, task_types={"classification"}, defaults=config)

    @metabench.hookimpl
    def cell_started(self, cell) -> None:
        self.started.append(cell.key)

    @metabench.hookimpl
    def cell_finished(self, cell, result) -> None:
        self.finished.append((cell.key, result.status))

    @metabench.hookimpl
    def update_machine_info(self, info) -> None:
        info["observer"] = "watching"


@pytest.fixture
def observer() -> Observer:
    watcher = Observer()
    get_plugin_manager().register(watcher, name="observer")
    return watcher


def context_for(**options: Any) -> tuple[RunContext, list]:
    plan = build_plan(make_config({**TINY, **options}))
    return RunContext(plan, torch.device("cpu"), build_datasets(plan)[0]), list(plan.cells)


@pytest.mark.parametrize(("text", "kind", "amount"), [
    ("episodes:20000", "episodes", 20000), ("time:5m", "time", 300), ("time:30s", "time", 30),
    ("time:1h", "time", 3600), ("time:90", "time", 90), ("time:0.5s", "time", 0.5),
])
def test_budgets_parse(text, kind, amount):
    assert Budget.parse(text) == Budget(kind, amount)


@pytest.mark.parametrize("text", ["episodes", "episodes:0", "episodes:1.5", "time:5d",
                                  "time:-1s", "steps:0", "weeks:2", ""])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(MetabenchError, match="expected episodes:N, steps:N") as error:
        Budget.parse(text)
    assert "\n" not in str(error.value)


def test_plan_expands_in_groups_and_skips_unsupported_pairs():
    config = make_config({"algorithms": "protonet,maml", "datasets": "micro,sinusoid",
                          "ways": "5,3", "shots": [1, 5], "seeds": "0,1"})
    plan = build_plan(config)
    keys = [cell.key for cell in plan.cells]
    assert keys[:4] == ["protonet/micro/5w1sq15/seed0", "maml/micro/5w1sq15/seed0",
                        "protonet/micro/5w1sq15/seed1", "maml/micro/5w1sq15/seed1"]
    assert len(keys) == len(set(keys)) == 2 * (2 * 2 * 2 + 2 * 2)  # sinusoid: no --ways
    sine = next(cell for cell in plan.cells if cell.dataset == "sinusoid")
    assert sine.backbone == "mlp" and plan.cells[0].backbone == "conv4"
    assert "not regression" in plan.skip_reason(sine)
    assert plan.skip_reason(plan.cells[0]) == ""


def test_config_lists_hparams_and_fingerprints():
    base = make_config({"shots": "1, 5", "set": ["protonet.lr=0.1"]})
    assert base.shots == (1, 5) and base.hparams == {"protonet": {"lr": "0.1"}}
    merged = make_config({"hparams": {"protonet": {"train_ways": 10}}, "device": "cpu"}, base)
    assert merged.hparams == {"protonet": {"lr": "0.1", "train_ways": 10}}
    assert make_config({"device": "cpu", "out": "x"}).fingerprint() == make_config({}).fingerprint()
    assert make_config({"seeds": [1]}).fingerprint() != make_config({}).fingerprint()
    with pytest.raises(MetabenchError, match="seeds='a' is not a list of ints"):
        make_config({"seeds": "a"})


def test_every_algorithm_starts_from_the_same_weights():
    context, cells = context_for(algorithms="protonet,batched", seeds="0,1")
    first, second, other_seed = (build_algorithm(cell, context) for cell in cells[:3])
    assert cells[0].group == cells[1].group != cells[2].group
    weights = [a.model.state_dict()["1.weight"] for a in (first, second, other_seed)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_every_algorithm_is_tested_on_the_same_episodes(observer):
    SEEN.clear()
    context, cells = context_for(algorithms="recorder,recorder2")
    for cell in cells:
        assert run_cell(cell, context).status == "ok"
    assert len(SEEN["recorder"]) == 2 * 4 + 10  # two validations of 4, then 10 test episodes
    assert SEEN["recorder"] == SEEN["recorder2"]


def test_the_best_validation_weights_are_the_ones_tested(observer):
    context, (cell,) = context_for(algorithms="saboteur")
    result = run_cell(cell, context)
    assert result.status == "ok"
    assert [point["val_accuracy"] == 0.0 for point in result.curve] == [False, True]
    assert result.best_step == 4 and result.steps == 8
    accuracy = [row[1] for row in result.episodes]
    assert sum(accuracy) > 0  # the broken final weights would score exactly 0 everywhere


def test_a_time_budget_trains_for_that_long():
    context, (cell,) = context_for(algorithms="protonet", budget="time:0.4s", val_points=3)
    result = run_cell(cell, context)
    assert result.status == "ok" and result.budget == "time:0.4s"
    assert result.profile["budget_seconds"] >= 0.4
    assert result.steps == result.train_episodes == result.profile["train_steps"] > 0
    assert 1 <= len(result.curve) <= 3


def test_test_outputs_do_not_outlive_their_chunk(monkeypatch):
    """Thousands of small long-lived outputs fragmented the heap (RSS grew by gigabytes)."""
    made: list[weakref.ref] = []
    predict = evaluation.checked_prediction

    def watched(algorithm, episode, spec):
        if episode.identity.split == "test":
            index = episode.identity.index
            alive = [i for i, ref in enumerate(made[: index - index % EVAL_CHUNK]) if ref()]
            assert not alive, f"outputs of test episodes {alive[:3]} still alive at {index}"
        output = predict(algorithm, episode, spec)
        if episode.identity.split == "test":
            made.append(weakref.ref(output))
        return output

    monkeypatch.setattr(evaluation, "checked_prediction", watched)
    context, (cell,) = context_for(algorithms="protonet", episodes=2 * EVAL_CHUNK + 7)
    result = run_cell(cell, context)
    assert result.status == "ok", result.reason
    assert len(made) == len(result.episodes) == 2 * EVAL_CHUNK + 7


def test_the_curve_keeps_every_numeric_step_metric():
    context, (cell,) = context_for(algorithms="protonet", budget="episodes:8", val_points=2)
    result = run_cell(cell, context)
    assert result.status == "ok" and len(result.curve) == 2
    for point in result.curve:
        assert 0.0 <= point["train_accuracy"] <= 1.0 and point["train_loss"] > 0


def testnumeric_metrics_keep_finite_numbers_only():
    metrics = {"loss": 1.0, "accuracy": torch.tensor(0.5), "epsilon": 1, "flag": True,
               "note": "text", "bad": float("nan"), "vector": torch.ones(3)}
    assert numeric_metrics(metrics) == {"accuracy": 0.5, "epsilon": 1.0}


def test_the_runner_reports_budget_progress_before_each_step(observer):
    PROGRESS_REPORTED.clear()
    context, (cell,) = context_for(algorithms="progresswatcher", budget="episodes:8",
                                   hparams=["progresswatcher.meta_batch_size=2"])
    result = run_cell(cell, context)
    assert result.status == "ok" and result.steps == 4
    assert PROGRESS_REPORTED == [0.0, 0.25, 0.5, 0.75]


def test_a_wrong_prediction_shape_fails_the_cell(observer):
    context, (cell,) = context_for(algorithms="wrongshape")
    result = run_cell(cell, context)
    assert result.status == "failed" and result.episodes == []
    assert result.reason == "predict returned shape (75, 6) for episode 0; expected (75, 5)"


def test_hooks_see_every_cell_and_add_to_the_environment(observer, tmp_path):
    metabench.compare(algorithms="protonet,wrongshape", out=tmp_path, progress=False, **TINY)
    keys = ["protonet/micro/5w1sq15/seed0", "wrongshape/micro/5w1sq15/seed0"]
    assert observer.started == keys
    assert observer.finished == [(keys[0], "ok"), (keys[1], "failed")]
    with Store.open_existing(tmp_path) as store:
        assert store.runs()[0].environment["observer"] == "watching"


def test_episode_scores_match_a_direct_computation():
    spec = TaskSpec(3, 1, 2)
    logits = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 0, 1, 1, 2, 2]).repeat(4, 1)
    scores = episode_scores(logits, targets, spec)
    for i in range(4):
        expected_loss = F.cross_entropy(logits[i], targets[i])
        expected_accuracy = (logits[i].argmax(1) == targets[i]).float().mean()
        assert scores["loss"][i] == pytest.approx(float(expected_loss), rel=1e-6)
        assert scores["accuracy"][i] == pytest.approx(float(expected_accuracy))
    values = torch.randn(2, 5, 1)
    mse = episode_scores(values, torch.zeros(2, 5, 1), TaskSpec(1, 5, 5, "regression"))["mse"]
    assert mse.tolist() == pytest.approx((values**2).mean(dim=(1, 2)).tolist())
