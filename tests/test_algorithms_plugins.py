"""The built-in algorithms as plugins: registration, hyperparameters, shared weights, resume."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import subprocess
import sys

import pytest
import torch

from metabench import Algorithm, AlgorithmSetup, MetabenchError, TaskSpec, registry
from metabench.backbones import Conv4
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides, parse_assignments
from metabench_plugins import learn2learn_ref

SPEC = TaskSpec(ways=5, shots=1, queries=2)
BUILTIN = ["maml", "fomaml", "protonet", "reptile"]
HAS_L2L = importlib.util.find_spec("learn2learn") is not None
ALL = BUILTIN + (["l2l-maml", "l2l-fomaml"] if HAS_L2L else [])


def make_setup(spec: TaskSpec = SPEC) -> AlgorithmSetup:
    torch.manual_seed(0)
    return AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=0)


def build(name: str, **overrides):
    entry = registry.get("algorithm", name)
    hparams = apply_overrides(name, entry.defaults, overrides)
    algorithm = entry.factory(make_setup(), hparams)
    return algorithm, hparams


@pytest.mark.parametrize("name", ALL)
def test_registered_with_task_types_defaults_and_description(name):
    entry = registry.get("algorithm", name)
    assert "classification" in entry.task_types
    assert dataclasses.is_dataclass(entry.defaults)
    assert entry.defaults.__dataclass_params__.frozen
    assert entry.description and "\n" not in entry.description
    assert entry.defaults.meta_batch_size >= 1


def test_protonet_declares_classification_only():
    assert registry.get("algorithm", "protonet").task_types == {"classification"}
    assert {"classification", "regression"} <= registry.get("algorithm", "maml").task_types


def test_fomaml_is_maml_with_the_first_order_flag():
    maml, fomaml = registry.get("algorithm", "maml"), registry.get("algorithm", "fomaml")
    assert maml.factory is fomaml.factory
    assert dataclasses.replace(maml.defaults, first_order=True) == fomaml.defaults


def test_overrides_from_the_command_line_are_typed():
    overrides = parse_assignments(["maml.inner_lr=0.1", "maml.first_order=yes",
                                   "maml.test_steps=5"])["maml"]
    algorithm, hparams = build("maml", **overrides)
    assert (hparams.inner_lr, hparams.first_order, hparams.test_steps) == (0.1, True, 5)
    assert algorithm.inner_lr == 0.1


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("maml", {"inner_lrr": "0.1"}, "maml has no hyperparameter 'inner_lrr'; known: "),
        ("maml", {"test_steps": "three"}, "maml.test_steps='three' is not a valid int"),
        ("reptile", {"outer_lr": "fast"}, "reptile.outer_lr='fast' is not a valid float"),
        ("maml", {"inner_lr": "-1"}, "maml.inner_lr=-1.0 must be positive"),
        ("fomaml", {"test_steps": "-1"}, "fomaml.test_steps=-1 must be >= 0"),
    ],
)
def test_bad_overrides_are_one_line_errors(name, overrides, message):
    with pytest.raises(MetabenchError) as error:
        build(name, **overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_gradient_based_algorithms_share_their_initial_weights():
    names = ["maml", "reptile"] + (["l2l-maml"] if HAS_L2L else [])
    states = [_model(build(name)[0]).state_dict() for name in names]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for key, value in state.items():
            assert torch.equal(value.contiguous(), states[0][key].contiguous()), key


def _model(algorithm) -> torch.nn.Module:
    return algorithm.maml.module if hasattr(algorithm, "maml") else algorithm.model


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_resumes_identically(name, tiny_dataset):
    algorithm, hparams = build(name, **({"test_steps": 5} if name == "reptile" else {}))
    assert isinstance(algorithm, Algorithm)
    spec = algorithm.train_task_spec(SPEC) if hasattr(algorithm, "train_task_spec") else SPEC
    spec = dataclasses.replace(spec, shots=min(spec.shots, 5))
    train = EpisodeSampler(tiny_dataset, "train", spec, seed=0)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    algorithm.meta_train_step(train.batch(range(2)))
    saved = copy.deepcopy(algorithm.state_dict())
    resumed = registry.get("algorithm", name).factory(make_setup(), hparams)
    resumed.load_state_dict(saved)
    torch.testing.assert_close(resumed.predict(episode), algorithm.predict(episode))
    after = [a.meta_train_step(train.batch(range(2, 4)))["loss"] for a in (algorithm, resumed)]
    assert after[0] == pytest.approx(after[1], rel=1e-5)
    torch.testing.assert_close(resumed.predict(episode), algorithm.predict(episode))


def test_learn2learn_reference_registers_nothing_without_learn2learn(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "learn2learn" else real(name, *a))
    registered = []
    learn2learn_ref.register_algorithms(register=lambda *a, **k: registered.append(a[0]))
    assert registered == []


def test_learn2learn_reference_module_imports_without_learn2learn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "learn2learn", None)  # makes `import learn2learn` fail
    module = importlib.reload(learn2learn_ref)
    assert hasattr(module, "register_algorithms")
    learn2learn_ref.import_learn2learn.cache_clear()
    if HAS_L2L:
        with pytest.raises(MetabenchError, match="learn2learn is installed but failed to import"):
            learn2learn_ref.import_learn2learn()
    learn2learn_ref.import_learn2learn.cache_clear()


def test_learn2learn_reference_rejects_vmap():
    pytest.importorskip("learn2learn")
    with pytest.raises(MetabenchError, match=r"l2l-maml\.vmap_tasks=True is not supported"):
        build("l2l-maml", vmap_tasks="true")


@pytest.mark.skipif(not HAS_L2L, reason="learn2learn is not installed")
def test_importing_learn2learn_prints_nothing():
    """gym, which learn2learn imports, prints an 'unmaintained' notice; a run must not show it."""
    code = "from metabench_plugins.learn2learn_ref import import_learn2learn; import_learn2learn()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stderr == "" and done.stdout == ""


@pytest.mark.parametrize("name", ["protonet", "reptile"])
def test_channels_last_changes_the_layout_not_the_predictions(name, tiny_dataset):
    # Reptile without test-time steps: its inner Adam (beta1 = 0) turns float rounding of
    # near-zero gradients into whole lr-sized steps, which hides what is compared here.
    extra = {"test_steps": "0"} if name == "reptile" else {}
    fast, _ = build(name, **extra)
    plain, _ = build(name, channels_last="false", **extra)
    conv = next(m for m in fast.model.modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    spec = TaskSpec(ways=5, shots=1, queries=2)
    for episode in EpisodeSampler(tiny_dataset, "test", spec, seed=0).batch(range(3)):
        torch.testing.assert_close(fast.predict(episode), plain.predict(episode),
                                   rtol=1e-4, atol=1e-4)
