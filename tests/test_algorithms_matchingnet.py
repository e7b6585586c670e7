"""Matching Networks: log-probabilities are the cosine attention over the support set."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from metabench import Algorithm, AlgorithmSetup, MetabenchError, TaskSpec, registry
from metabench.backbones import Conv4
from metabench.data import build_dataset
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides
from metabench.plugins import load_plugins
from metabench_plugins.matchingnet import MatchingNet, MatchingNetConfig, attention_log_probs
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

SPEC = TaskSpec(ways=5, shots=3, queries=2)


@pytest.fixture(autouse=True)
def matchingnet_registered():
    """Until the entry point is installed; loading a module twice is a no-op."""
    load_plugins(["metabench_plugins.matchingnet"])


def make_setup(spec: TaskSpec = SPEC, seed: int = 0) -> AlgorithmSetup:
    torch.manual_seed(seed)
    return AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=seed)


def make_matchingnet(**overrides) -> MatchingNet:
    return MatchingNet(make_setup(), MatchingNetConfig(**overrides))


def cosine_attention_by_hand(support, labels, query, ways: int, scale: float = 1.0) -> torch.Tensor:
    """log sum_i a(q, x_i) y_i with a = softmax over the support of the cosines, one query at a time."""
    out = torch.empty(len(query), ways)
    for i, q in enumerate(query):
        cosines = torch.stack([q @ s / (q.norm() * s.norm()) for s in support])
        attention = torch.exp(scale * cosines) / torch.exp(scale * cosines).sum()
        for k in range(ways):
            out[i, k] = torch.log(attention[labels == k].sum())
    return out


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step written out (PyTorch's gate order: input, forget, cell, output)."""
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def fce_by_hand(fce, support, query, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vinyals et al., appendix A: g = g' + forward h + backward h; f = h_K of the attention LSTM."""
    lstm, d = fce.support_lstm, support.shape[-1]

    def run(sequence, suffix: str) -> list[torch.Tensor]:
        weights = [getattr(lstm, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c, states = torch.zeros(d), torch.zeros(d), []
        for x in sequence:
            h, c = lstm_step(x, h, c, *weights)
            states.append(h)
        return states

    forward, backward = run(support, ""), run(support.flip(0), "_reverse")[::-1]
    g = torch.stack([s + f + b for s, f, b in zip(support, forward, backward, strict=True)])
    cell = fce.query_cell
    f = []
    for q in query:
        h, c = q, torch.zeros(d)
        for _ in range(steps):
            attention = torch.softmax(g @ h, dim=0)
            read = attention @ g
            h, c = lstm_step(torch.cat([q, read]), h, c, cell.weight_ih, cell.weight_hh,
                             cell.bias_ih, cell.bias_hh)
            h = h + q
        f.append(h)
    return g, torch.stack(f)


def embeddings(matchingnet: MatchingNet, episode) -> tuple[torch.Tensor, torch.Tensor]:
    matchingnet.model.eval()
    with torch.no_grad():
        return matchingnet.model(episode.support_x), matchingnet.model(episode.query_x)


def test_predict_is_the_cosine_attention_computed_by_hand(tiny_dataset):
    matchingnet = make_matchingnet()
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    log_probs = matchingnet.predict(episode)
    assert log_probs.shape == (SPEC.ways * SPEC.queries, SPEC.ways)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(log_probs)))
    support, query = embeddings(matchingnet, episode)
    expected = cosine_attention_by_hand(support, episode.support_y, query, SPEC.ways)
    torch.testing.assert_close(log_probs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [0, 2])
def test_predict_with_fce_is_the_appendix_computed_by_hand(tiny_dataset, steps):
    matchingnet = make_matchingnet(fce=True, fce_steps=steps)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    log_probs = matchingnet.predict(episode)
    assert log_probs.shape == (SPEC.ways * SPEC.queries, SPEC.ways)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(log_probs)))
    support, query = embeddings(matchingnet, episode)
    with torch.no_grad():
        g, f = fce_by_hand(matchingnet.fce, support, query, steps or len(support))
    expected = cosine_attention_by_hand(g, episode.support_y, f, SPEC.ways)
    torch.testing.assert_close(log_probs, expected, rtol=1e-4, atol=1e-4)
    # The context changes the prediction: FCE is not the plain attention.
    plain = cosine_attention_by_hand(support, episode.support_y, query, SPEC.ways)
    assert not torch.allclose(log_probs, plain, atol=1e-3)


def test_attention_log_probs_with_a_scale_and_task_dimensions():
    generator = torch.Generator().manual_seed(0)
    support, query = torch.randn(3, 10, 8, generator=generator), torch.randn(3, 4, 8, generator=generator)
    labels = torch.arange(5).repeat_interleave(2)[torch.randperm(10, generator=generator)].expand(3, 10)
    cosines = torch.nn.functional.cosine_similarity(query.unsqueeze(-2), support.unsqueeze(-3), dim=-1)
    batched = attention_log_probs(10.0 * cosines, labels, 5)
    for t in range(3):
        expected = cosine_attention_by_hand(support[t], labels[t], query[t], 5, scale=10.0)
        torch.testing.assert_close(batched[t], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fce", [False, True])
def test_batched_log_probs_equal_per_task_log_probs(fce):
    matchingnet = make_matchingnet(fce=fce, fce_steps=3)
    generator = torch.Generator().manual_seed(1)
    features = matchingnet.model.out_features
    support, query = torch.randn(3, 10, features, generator=generator), torch.randn(3, 6, features)
    labels = torch.arange(5).repeat_interleave(2).expand(3, 10)
    with torch.no_grad():
        batched = matchingnet.log_probs(support, labels, query, 5)
        for t in range(3):
            single = matchingnet.log_probs(support[t : t + 1], labels[t], query[t : t + 1], 5)[0]
            torch.testing.assert_close(batched[t], single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fce", [False, True])
def test_meta_train_step_lowers_the_loss_on_a_fixed_batch(tiny_dataset, fce):
    matchingnet = make_matchingnet(meta_batch_size=2, fce=fce)
    assert matchingnet.episodes_per_step == 2
    batch = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(2))
    first = matchingnet.meta_train_step(batch)
    for _ in range(4):
        last = matchingnet.meta_train_step(batch)
    assert set(first) == {"loss", "accuracy"}
    assert last["loss"] < first["loss"]


@pytest.mark.parametrize("fce", [False, True])
def test_state_dict_round_trip_gives_identical_predictions(tiny_dataset, fce):
    entry = registry.get("algorithm", "matchingnet")
    hparams = apply_overrides("matchingnet", entry.defaults, {"fce": str(fce)})
    matchingnet = entry.factory(make_setup(), hparams)
    assert isinstance(matchingnet, Algorithm)
    train = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    matchingnet.meta_train_step(train.batch(range(1)))
    saved = copy.deepcopy(matchingnet.state_dict())
    assert ("fce" in saved) == fce
    resumed = entry.factory(make_setup(seed=1), hparams)  # other initial weights, overwritten
    resumed.load_state_dict(saved)
    torch.testing.assert_close(resumed.predict(episode), matchingnet.predict(episode), rtol=0, atol=0)
    after = [a.meta_train_step(train.batch(range(1, 2)))["loss"] for a in (matchingnet, resumed)]
    assert after[0] == pytest.approx(after[1], rel=1e-6)
    torch.testing.assert_close(resumed.predict(episode), matchingnet.predict(episode))


def test_loading_a_state_with_the_other_fce_setting_is_a_one_line_error():
    state = make_matchingnet(fce=True).state_dict()
    with pytest.raises(MetabenchError, match="matchingnet state has FCE weights but fce=False"):
        make_matchingnet().load_state_dict(state)


def test_backbone_starts_from_protonets_initial_weights():
    setup = make_setup()
    matchingnet = MatchingNet(setup, MatchingNetConfig(fce=True))
    protonet = ProtoNet(setup, ProtoNetConfig())
    assert matchingnet.model is not setup.backbone  # a private copy: training it leaves others alone
    mine, theirs = matchingnet.model.state_dict(), protonet.model.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in mine.items():
        assert torch.equal(value.contiguous(), theirs[key].contiguous()), key


def test_fce_weights_come_from_the_setup_seed_not_the_global_generator():
    first = make_matchingnet(fce=True)
    torch.manual_seed(123)
    second = MatchingNet(make_setup(seed=0), MatchingNetConfig(fce=True))
    other = MatchingNet(make_setup(seed=1), MatchingNetConfig(fce=True))
    assert first.fce is not None and second.fce is not None and other.fce is not None
    for (name, a), b, c in zip(first.fce.state_dict().items(), second.fce.state_dict().values(),
                               other.fce.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name


def test_channels_last_changes_the_layout_not_the_predictions(tiny_dataset):
    fast, plain = make_matchingnet(), make_matchingnet(channels_last=False)
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for episode in EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(2)):
        torch.testing.assert_close(fast.predict(episode), plain.predict(episode), rtol=1e-4, atol=1e-4)


def test_registered_for_classification_with_frozen_defaults():
    entry = registry.get("algorithm", "matchingnet")
    assert entry.task_types == {"classification"}
    assert dataclasses.is_dataclass(entry.defaults) and entry.defaults.__dataclass_params__.frozen
    assert entry.defaults == MatchingNetConfig()
    assert (entry.defaults.fce, entry.defaults.lr, entry.defaults.meta_batch_size) == (False, 1e-3, 1)
    assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"lr": "0"}, "matchingnet.lr=0.0 must be positive"),
     ({"meta_batch_size": "0"}, "matchingnet.meta_batch_size=0 must be >= 1"),
     ({"fce_steps": "-1"}, "matchingnet.fce_steps=-1 must be >= 0"),
     ({"cosine_scale": "-2"}, "matchingnet.cosine_scale=-2.0 must be positive")],
)
def test_bad_hyperparameters_are_one_line_errors(overrides, message):
    entry = registry.get("algorithm", "matchingnet")
    with pytest.raises(MetabenchError) as error:
        entry.factory(make_setup(), apply_overrides("matchingnet", entry.defaults, overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_learns_glyphs_5way_1shot_well_above_chance():
    """40 Adam steps of one 5-way 1-shot episode (15 queries/class); chance is 0.2 (0.596 reached)."""
    glyphs = build_dataset("glyphs")
    spec = TaskSpec(ways=5, shots=1, queries=15)
    entry = registry.get("algorithm", "matchingnet")
    matchingnet = entry.factory(make_setup(spec), entry.defaults)
    train = EpisodeSampler(glyphs, "train", spec, seed=0)
    for step in range(40):
        metrics = matchingnet.meta_train_step(train.batch(range(step, step + 1)))
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    test = EpisodeSampler(glyphs, "test", spec, seed=0)
    hits = [(matchingnet.predict(e).argmax(-1) == e.query_y).float().mean()
            for e in (test.episode(i) for i in range(50))]
    reached = float(torch.stack(hits).mean())
    print(f"matchingnet: {reached:.3f} test accuracy after 40 meta-training steps")
    assert reached > 0.35
