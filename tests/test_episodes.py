"""The episode sampler: determinism everywhere, label remapping, distinct draws, uniformity."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

import pytest
import torch

from metabench.data.base import ClassSplit, InMemoryDataset
from metabench.data.sinusoid import Sinusoid
from metabench.data.synthetic import SyntheticImages
from metabench.episodes import READ_AHEAD_STEPS, EpisodeSampler, ReadAhead, episode_seed, read_ahead
from metabench.errors import MetabenchError
from metabench.protocol import EpisodeId, TaskSpec

SPEC = TaskSpec(ways=5, shots=2, queries=3)


def digest(episode) -> str:
    """A stable fingerprint of an episode's tensors and classes."""
    h = hashlib.sha256()
    for t in (episode.support_x, episode.support_y, episode.query_x, episode.query_y):
        h.update(t.contiguous().numpy().tobytes())
    h.update(repr(episode.classes).encode())
    return h.hexdigest()


def same(a, b) -> bool:
    return (
        a.classes == b.classes
        and torch.equal(a.support_x, b.support_x)
        and torch.equal(a.query_x, b.query_x)
        and torch.equal(a.support_y, b.support_y)
        and torch.equal(a.query_y, b.query_y)
    )


def labelled_dataset(counts: list[int], size: int = 4) -> InMemoryDataset:
    """Each image's first row holds its class and its index within the class (base 256)."""
    groups = []
    for c, count in enumerate(counts):
        images = torch.zeros(count, 1, size, size, dtype=torch.uint8)
        index = torch.arange(count)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = c // 256, c % 256
        images[:, 0, 0, 2], images[:, 0, 0, 3] = index // 256, index % 256
        groups.append(images)
    split = ClassSplit.from_groups(groups, [f"class{c}" for c in range(len(counts))])
    return InMemoryDataset("labelled", {"train": split, "validation": split, "test": split})


def decode(images: torch.Tensor) -> list[tuple[int, int]]:
    """(class, index) of each image of a [n, 1, H, W] float tensor made by labelled_dataset."""
    raw = (images[:, 0, 0, :4] * 255).round().to(torch.int64)
    return [(a * 256 + b, c * 256 + d) for a, b, c, d in raw.tolist()]


def test_two_sampler_instances_give_the_same_episodes(tiny_dataset):
    first = EpisodeSampler(tiny_dataset, "train", SPEC, seed=3)
    second = EpisodeSampler(tiny_dataset, "train", SPEC, seed=3)
    for i in (0, 1, 17, 1000):
        assert same(first.episode(i), second.episode(i))


def test_reversed_request_order_gives_the_same_episodes(tiny_dataset):
    forward = EpisodeSampler(tiny_dataset, "test", SPEC, seed=1)
    backward = EpisodeSampler(tiny_dataset, "test", SPEC, seed=1)
    ahead = [forward.episode(i) for i in range(20)]
    behind = [backward.episode(i) for i in reversed(range(20))][::-1]
    assert all(same(a, b) for a, b in zip(ahead, behind, strict=True))


def test_another_process_gives_the_same_episodes(tiny_dataset):
    sampler = EpisodeSampler(tiny_dataset, "validation", SPEC, seed=7)
    here = [digest(sampler.episode(i)) for i in (0, 5, 99)]
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_episodes import digest, SPEC;"
        "from metabench.data.synthetic import SyntheticImages;"
        "from metabench.episodes import EpisodeSampler;"
        "s = EpisodeSampler(SyntheticImages(classes=(20, 8, 10), examples=20), 'validation', SPEC, seed=7);"
        "print(' '.join(digest(s.episode(i)) for i in (0, 5, 99)))"
    )
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", script, tests_dir], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == here


def test_batch_equals_the_episodes_it_stacks(tiny_dataset):
    sampler = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0)
    batch = sampler.batch([4, 9, 2])
    assert batch.support_x.shape == (3, SPEC.ways * SPEC.shots, 1, 28, 28)
    assert batch.query_y.shape == (3, SPEC.ways * SPEC.queries)
    for episode, i in zip(batch, [4, 9, 2], strict=True):
        assert same(episode, sampler.episode(i))
        assert episode.identity == EpisodeId("synthetic", "train", 0, i)
    first, second = next(sampler.batches(2, start=4)), sampler.batch([4, 5])
    assert torch.equal(first.query_x, second.query_x)


def test_seed_split_and_index_change_the_episode(tiny_dataset):
    base = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0)
    other_seed = EpisodeSampler(tiny_dataset, "train", SPEC, seed=1)
    assert not same(base.episode(0), base.episode(1))
    assert not same(base.episode(0), other_seed.episode(0))
    ids = {episode_seed(EpisodeId("synthetic", s, 0, 0), SPEC) for s in ("train", "test")}
    assert len(ids) == 2


def test_labels_are_remapped_class_major_and_images_match_their_class():
    dataset = labelled_dataset([20] * 12)
    sampler = EpisodeSampler(dataset, "train", SPEC, seed=0)
    for i in range(30):
        episode = sampler.episode(i)
        assert episode.support_y.tolist() == [k for k in range(5) for _ in range(2)]
        assert episode.query_y.tolist() == [k for k in range(5) for _ in range(3)]
        assert len(set(episode.classes)) == 5
        for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
            for (cls, _), label in zip(decode(x), y.tolist(), strict=True):
                assert cls == episode.classes[label]
        drawn = decode(episode.support_x) + decode(episode.query_x)
        assert len(set(drawn)) == len(drawn), "an image appears twice in one episode"


def test_float_images_lie_in_unit_range(tiny_dataset):
    episode = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).episode(0)
    assert episode.support_x.dtype == torch.float32
    assert float(episode.query_x.min()) >= 0.0 and float(episode.query_x.max()) <= 1.0


@pytest.mark.parametrize(("counts", "queries", "sorted_keys"),
                         [([20] * 6, 9, True), ([60] * 400, 4, False)],
                         ids=["sorted-keys", "rejection"])
def test_classes_and_positions_are_drawn_uniformly(counts, queries, sorted_keys):
    """Class frequencies and which example lands in the support set are near their expectation."""
    dataset = labelled_dataset(counts)
    spec = TaskSpec(ways=5, shots=1, queries=queries)
    sampler = EpisodeSampler(dataset, "train", spec, seed=0)
    draws = (sampler._draw.class_draws, sampler._draw.example_draws)
    assert draws == ((len(counts), counts[0]) if sorted_keys else (5, 1 + queries))
    batch = sampler.batch(range(3000))
    classes = Counter(c for cs in batch.classes for c in cs)
    expected = 3000 * 5 / len(counts)
    if len(counts) <= 10:
        assert all(abs(n - expected) < 0.1 * expected for n in classes.values())
    else:
        assert len(classes) == len(counts) and max(classes.values()) < 4 * expected
    support = Counter(index for _, index in decode(batch.support_x.reshape(-1, 1, 4, 4)))
    per_index = 15000 / counts[0]
    assert all(abs(support[i] - per_index) < 0.25 * per_index for i in range(counts[0]))
    first = Counter(cs[0] for cs in batch.classes)
    assert len(first) == len(counts), "label 0 does not range over every class"


def test_classes_of_unequal_size_draw_within_each_class():
    counts = [5, 30, 6, 7, 300, 5]
    dataset = labelled_dataset(counts)
    sampler = EpisodeSampler(dataset, "train", TaskSpec(ways=4, shots=2, queries=3), seed=0)
    seen = set()
    for i in range(200):
        episode = sampler.episode(i)
        drawn = decode(episode.support_x) + decode(episode.query_x)
        assert len(set(drawn)) == len(drawn)
        assert all(index < counts[cls] for cls, index in drawn)
        seen.update(drawn)
    assert max(index for cls, index in seen if cls == 4) > 100


def test_rejection_retries_are_deterministic():
    # 2 ways of 3 classes: a first draw repeats a class a third of the time, and 10 of
    # 200-300 examples repeat one about a fifth of the time
    counts = [300, 200, 250]
    dataset = labelled_dataset(counts)
    spec = TaskSpec(ways=2, shots=5, queries=5)
    sampler = EpisodeSampler(dataset, "train", spec, seed=0)
    assert (sampler._draw.class_draws, sampler._draw.example_draws) == (2, 10)
    batch = sampler.batch(range(50))
    for i, episode in enumerate(batch):
        assert same(episode, sampler.episode(i))
        assert len(set(episode.classes)) == 2
        drawn = decode(episode.support_x) + decode(episode.query_x)
        assert len(set(drawn)) == 20 and all(index < counts[c] for c, index in drawn)


def test_episodes_are_pinned_across_versions():
    """Changing how episodes are drawn changes stored results: bump this only on purpose."""
    dataset = labelled_dataset([20] * 30)
    sampler = EpisodeSampler(dataset, "test", TaskSpec(ways=5, shots=1, queries=2), seed=0)
    drawn = [(sampler.episode(i).classes, decode(sampler.episode(i).support_x)) for i in range(2)]
    assert drawn == PINNED


PINNED = [
    ((9, 12, 14, 2, 5), [(9, 1), (12, 0), (14, 2), (2, 5), (5, 18)]),
    ((6, 15, 27, 16, 10), [(6, 12), (15, 12), (27, 13), (16, 12), (10, 14)]),
]


def test_regression_episodes_are_deterministic():
    spec = TaskSpec(ways=1, shots=10, queries=5, task_type="regression")
    a = EpisodeSampler(Sinusoid(), "train", spec, seed=2)
    b = EpisodeSampler(Sinusoid(), "train", spec, seed=2)
    assert torch.equal(a.episode(3).support_y, b.episode(3).support_y)
    assert a.batch([0, 1]).support_x.shape == (2, 10, 1)


def test_negative_index_is_rejected(tiny_dataset):
    sampler = EpisodeSampler(tiny_dataset, "train", SPEC)
    with pytest.raises(MetabenchError, match="-1"):
        sampler.episode(-1)


def test_large_splits_gather_uint8_and_convert(tiny_dataset, monkeypatch):
    from metabench import episodes

    cached = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).episode(3)
    monkeypatch.setattr(episodes, "FLOAT_CACHE_BYTES", 0)
    fresh = type(tiny_dataset)(classes=(20, 8, 10), examples=20)
    assert same(EpisodeSampler(fresh, "train", SPEC, seed=0).episode(3), cached)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_episodes_equal_cpu_episodes(tiny_dataset):
    cpu = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(4))
    gpu = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0, device="cuda").batch(range(4))
    assert gpu.support_x.is_cuda and gpu.query_y.is_cuda
    assert torch.equal(gpu.support_x.cpu(), cpu.support_x)
    assert torch.equal(gpu.query_x.cpu(), cpu.query_x)


@pytest.mark.slow
def test_sampler_benchmark_prints_one_json_object():
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler.py"
    out = subprocess.run([sys.executable, str(script), "--json", "--seconds", "0.2", "--rounds", "1"],
                         capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(out.stdout)
    assert {"metabench_per_s", "learn2learn_per_s", "ratio", "context"} <= set(result)
    assert result["metabench_per_s"] > 0
    if result["learn2learn_per_s"] is not None:
        assert result["ratio"] == pytest.approx(result["metabench_per_s"] / result["learn2learn_per_s"],
                                                rel=0.01)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("classes", [(5, 5, 5), (30, 8, 10)])
def test_episodes_that_use_every_class_and_every_example(classes):
    """shots + queries == examples per class and ways == classes: every draw is a permutation."""
    dataset = SyntheticImages(classes=classes, examples=20)
    sampler = EpisodeSampler(dataset, "test", TaskSpec(ways=5, shots=5, queries=15))
    episode = sampler.episode(0)
    assert len(set(episode.classes)) == 5
    images = torch.cat([episode.support_x, episode.query_x])
    assert images.shape[0] == 100
    again = EpisodeSampler(dataset, "test", TaskSpec(ways=5, shots=5, queries=15)).episode(0)
    assert torch.equal(episode.query_x, again.query_x)


def test_read_ahead_hands_out_the_batches_the_sampler_would(tiny_dataset):
    """Training draws several steps at once; each step's batch is the one it asked for,
    including a shorter last step and a request before the drawn block."""
    spec = TaskSpec(ways=5, shots=1, queries=3)
    sampler = EpisodeSampler(tiny_dataset, "train", spec, seed=3)
    ahead = read_ahead(sampler, 2)
    assert isinstance(ahead, ReadAhead) and ahead.steps == READ_AHEAD_STEPS
    for start, size in [(0, 2), (2, 2), (4, 1), (5, 2), (40, 2), (1, 2)]:
        got, expected = ahead.batch(range(start, start + size)), sampler.batch(range(start, start + size))
        for name in ("support_x", "support_y", "query_x", "query_y"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), (start, name)
        assert got.classes == expected.classes and got.identities == expected.identities
    assert read_ahead(sampler, 10**6) is sampler  # a step too large to draw ahead
    regression = EpisodeSampler(Sinusoid(), "train",
                                TaskSpec(ways=1, shots=10, queries=5, task_type="regression"))
    assert read_ahead(regression, 1) is regression
