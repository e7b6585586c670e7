"""Test-time batch norm: the ``transductive`` option of the MAML family and Reptile, and
``protocol_details()`` of every built-in algorithm.

Transductive (Finn et al. 2017; the default): the query set goes through the adapted network
in one pass, so batch norm normalises each query with statistics of the whole query set.
Non-transductive (Nichol et al. 2018, openai/supervised-reptile without ``--transductive``):
each query goes through with the support set alone.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.func import functional_call

from metabench import (
    AlgorithmSetup,
    Episode,
    MetabenchError,
    TaskSpec,
    TrainBatches,
    algorithm_helpers,
    registry,
)
from metabench.algorithm_helpers import per_query_outputs
from metabench.backbones import MLP, Conv4
from metabench.data.sinusoid import Sinusoid
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides
from metabench.plugins import load_plugins

SPEC = TaskSpec(ways=5, shots=1, queries=3)
MODULES = ["maml", "anil", "metasgd", "reptile", "protonet", "matchingnet", "baseline",
           "learn2learn_ref"]
# The algorithms with the option; test_steps=1 keeps them fast (Reptile: full-batch steps).
WITH_OPTION = {
    "maml": {"test_steps": 1},
    "fomaml": {"test_steps": 1},
    "anil": {"test_steps": 1},
    "metasgd": {},
    "reptile": {"test_steps": 2, "test_batch": 5},
}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def plugins():
    """Loading an already-registered module is a no-op."""
    load_plugins([f"metabench_plugins.{name}" for name in MODULES])


def make_setup(spec: TaskSpec = SPEC, **extra) -> AlgorithmSetup:
    torch.manual_seed(0)
    return AlgorithmSetup(Conv4((1, 28, 28), hidden=16), spec, torch.device("cpu"), seed=0, **extra)


def build(name: str, setup: AlgorithmSetup | None = None, **overrides):
    """The registered algorithm, its hyperparameters set as ``--set`` sets them."""
    entry = registry.get("algorithm", name)
    hparams = apply_overrides(name, entry.defaults, WITH_OPTION.get(name, {}) | overrides)
    return entry.factory(setup or make_setup(), hparams)


@pytest.fixture
def episode(tiny_dataset) -> Episode:
    return EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)


def with_queries(episode: Episode, rows: torch.Tensor) -> Episode:
    """The same episode (same identity, so the same fine-tuning) with query rows ``rows``."""
    return dataclasses.replace(episode, query_x=episode.query_x[rows], query_y=episode.query_y[rows])


def predictions(name: str, episode: Episode, transductive: bool) -> torch.Tensor:
    return build(name, transductive=str(transductive).lower()).predict(episode)


@pytest.mark.parametrize("name", WITH_OPTION)
def test_the_two_settings_give_different_query_predictions(name, episode):
    same = predictions(name, episode, True)
    other = predictions(name, episode, False)
    assert same.shape == other.shape
    assert (same - other).abs().max() > 1e-3


@pytest.mark.parametrize("name", WITH_OPTION)
def test_non_transductive_predictions_ignore_the_other_queries(name, episode):
    algorithm = build(name, transductive=False)
    full = algorithm.predict(episode)
    order = torch.randperm(len(episode.query_x), generator=torch.Generator().manual_seed(0))
    permuted = algorithm.predict(with_queries(episode, order))
    torch.testing.assert_close(permuted, full[order], **TOLERANCE)
    kept = torch.tensor([0, 4, 9])
    torch.testing.assert_close(algorithm.predict(with_queries(episode, kept)), full[kept], **TOLERANCE)
    alone = algorithm.predict(with_queries(episode, torch.tensor([7])))
    torch.testing.assert_close(alone, full[7:8], **TOLERANCE)


@pytest.mark.parametrize("name", WITH_OPTION)
def test_transductive_predictions_depend_on_the_other_queries(name, episode):
    algorithm = build(name, transductive=True)
    full = algorithm.predict(episode)
    kept = torch.tensor([0, 4, 9])
    assert (algorithm.predict(with_queries(episode, kept)) - full[kept]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["maml", "anil", "metasgd"])
def test_non_transductive_equals_support_plus_one_query_at_a_time(name, episode):
    """The reference definition: the adapted network on the support set and one query."""
    algorithm = build(name, transductive=False)
    fast = algorithm.adapt(episode.support_x, episode.support_y)
    with torch.no_grad():
        expected = torch.stack([
            functional_call(algorithm.model, fast, (torch.cat([episode.support_x, query[None]]),))[-1]
            for query in episode.query_x
        ])
    torch.testing.assert_close(algorithm.predict(episode), expected, **TOLERANCE)


def test_reptile_non_transductive_equals_support_plus_one_query_at_a_time(episode):
    algorithm = build("reptile", transductive=False)
    predicted = algorithm.predict(episode)  # leaves the fine-tuned weights in the learner
    with torch.no_grad():
        expected = torch.stack([
            algorithm.learner(torch.cat([episode.support_x, query[None]]))[-1]
            for query in episode.query_x
        ])
    torch.testing.assert_close(predicted, expected, **TOLERANCE)


def test_anil_non_transductive_features_see_the_support_set_and_one_query(episode):
    """ANIL's frozen body: query features from support + one query, then the adapted head."""
    algorithm = build("anil", transductive=False)
    fast = algorithm.adapt(episode.support_x, episode.support_y)
    backbone = {k.removeprefix("backbone."): v for k, v in fast.items() if k.startswith("backbone.")}
    with torch.no_grad():
        features = torch.stack([
            functional_call(algorithm.model.backbone, backbone,
                            (torch.cat([episode.support_x, query[None]]),))[-1]
            for query in episode.query_x
        ])
        expected = torch.nn.functional.linear(features, fast["head.weight"], fast["head.bias"])
    torch.testing.assert_close(algorithm.predict(episode), expected, **TOLERANCE)


@pytest.mark.parametrize("channels_last", [False, True])
def test_batched_per_query_pass_equals_the_loop(episode, monkeypatch, channels_last):
    """The vmap path (the default off the CPU), in chunks, equals one query at a time."""
    algorithm = build("maml", transductive=False, channels_last=channels_last)
    fast = algorithm.adapt(episode.support_x, episode.support_y)

    def run(x: torch.Tensor) -> torch.Tensor:
        return functional_call(algorithm.model, fast, (x,))

    monkeypatch.setattr(algorithm_helpers, "PER_QUERY_IMAGES", 9)  # chunks of 4 queries (+ 5 support)
    with torch.inference_mode():
        looped = per_query_outputs(run, episode.support_x, episode.query_x, batched=False)
        batched = per_query_outputs(run, episode.support_x, episode.query_x, batched=True)
    torch.testing.assert_close(batched, looped, **TOLERANCE)


def test_batched_per_query_pass_equals_the_loop_for_reptile(episode):
    """Reptile's learner is called as a module, not through ``functional_call``."""
    algorithm = build("reptile", transductive=False)
    looped = algorithm.predict(episode)
    with torch.inference_mode():
        batched = per_query_outputs(algorithm.learner, episode.support_x, episode.query_x,
                                    batched=True)
    torch.testing.assert_close(batched, looped, **TOLERANCE)


def test_training_is_the_same_in_both_settings(tiny_dataset):
    batch = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(2))
    models = []
    for transductive in (True, False):
        algorithm = build("maml", transductive=transductive)
        algorithm.meta_train_step(batch)
        models.append(algorithm.model.state_dict())
    for key, value in models[0].items():
        torch.testing.assert_close(models[1][key], value, rtol=0, atol=0)


def test_compile_with_non_transductive_warns_and_evaluates_eagerly(episode):
    with pytest.warns(RuntimeWarning, match="compile=True is not used with transductive=False"):
        compiled = build("maml", transductive=False, compile=True)
    eager = build("maml", transductive=False)
    assert not compiled._compile
    torch.testing.assert_close(compiled.predict(episode), eager.predict(episode), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["maml", "anil", "reptile"])
def test_regression_accepts_the_option_and_is_unaffected(name):
    spec = TaskSpec(shots=10, queries=10, task_type="regression")
    episode = EpisodeSampler(Sinusoid(), "test", spec, seed=0).episode(0)

    def setup() -> AlgorithmSetup:
        torch.manual_seed(0)
        return AlgorithmSetup(MLP((1,)), spec, torch.device("cpu"), seed=0, input_shape=(1,))

    same, other = (build(name, setup(), transductive=value) for value in (True, False))
    torch.testing.assert_close(other.predict(episode), same.predict(episode), rtol=0, atol=0)
    assert other.protocol_details() == {"batch_norm": "none"}


@pytest.mark.parametrize("name", WITH_OPTION)
def test_protocol_details_report_the_setting(name):
    assert build(name).protocol_details() == {"batch_norm": "transductive"}
    assert build(name, transductive=False).protocol_details() == {"batch_norm": "non-transductive"}


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "baseline", "baseline-pp"])
def test_protocol_details_of_eval_mode_algorithms(name, tiny_dataset):
    setup = make_setup(train_batches=TrainBatches(tiny_dataset, seed=0))
    algorithm = build(name, setup)
    assert algorithm.protocol_details() == {"batch_norm": "running averages"}
    algorithm_helpers.use_batch_statistics(algorithm.model)  # a backbone whose batch norm keeps no averages
    assert algorithm.protocol_details() == {"batch_norm": "transductive"}


def test_learn2learn_reference_refuses_non_transductive():
    from metabench_plugins.learn2learn_ref import L2LMAML
    from metabench_plugins.maml import MAMLConfig

    with pytest.raises(MetabenchError, match=r"l2l-maml\.transductive=False is not supported"):
        L2LMAML(make_setup(), MAMLConfig(channels_last=False, transductive=False))


def test_learn2learn_reference_reports_transductive():
    from metabench_plugins import learn2learn_ref

    if not learn2learn_ref.learn2learn_available():
        pytest.skip("learn2learn is not installed (scripts/install_learn2learn.sh)")
    algorithm = build("l2l-maml")
    assert algorithm.protocol_details() == {"batch_norm": "transductive"}
