"""The MuJoCo half-cheetah task families (issue 26): rewards against hand computations and
Gymnasium's own HalfCheetah-v5, tasks, starts and noise seeded by identity across processes,
identical policies giving identical returns, a tiny comparison through the harness, and
the listing without the ``mujoco`` extra."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import metabench
from metabench import registry
from metabench.episodes import EpisodeSampler
from metabench.protocol import TaskSpec

HAVE_MUJOCO = all(importlib.util.find_spec(name) for name in ("mujoco", "gymnasium"))
needs_mujoco = pytest.mark.skipif(not HAVE_MUJOCO, reason="the mujoco extra is not installed "
                                  "(pip install 'metabench[mujoco]')")

STATE = [0.0, 0.3, 0.02, -0.05, 0.2, -0.3, 0.1, -0.2, 0.4, -0.1,  # time, qpos (9)
         1.5, -0.2, 0.3, 2.0, -1.0, 0.5, -2.5, 1.2, -0.4]  # qvel (9)
ACTION = [0.5, -0.8, 0.3, 1.0, -0.2, 0.7]


def mujoco_step(state: list[float], action: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel after five physics steps of one MjData, by hand."""
    import mujoco

    from metabench.rl.halfcheetah import load_model

    model = load_model()
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = state[1:10], state[10:]
    data.ctrl[:] = action
    mujoco.mj_step(model, data, 5)
    return data.qpos.copy(), data.qvel.copy()


@needs_mujoco
@pytest.mark.parametrize("goal", [0.0, 1.3, 2.0])
def test_velocity_reward_by_hand(goal):
    from metabench.rl.halfcheetah import HalfCheetahVel

    env = HalfCheetahVel()
    states = torch.tensor([STATE], dtype=torch.float64)
    next_states, reward, done = env.step(states, torch.tensor([[goal]]), torch.tensor([ACTION]))
    qpos, qvel = mujoco_step(STATE, ACTION)
    assert next_states[0, 1:10].numpy() == pytest.approx(qpos, abs=1e-6)
    assert next_states[0, 10:].numpy() == pytest.approx(qvel, abs=1e-5)
    velocity = (qpos[0] - STATE[1]) / (5 * 0.01)
    expected = -abs(velocity - goal) - 0.05 * sum(a * a for a in ACTION)
    assert reward.item() == pytest.approx(expected, abs=1e-5) and not done.item()
    assert env.observe(next_states)[0].numpy() == pytest.approx(np.concatenate([qpos[1:], qvel]),
                                                                abs=1e-5)


@needs_mujoco
@pytest.mark.parametrize("direction", [-1.0, 1.0])
def test_direction_reward_by_hand_and_the_control_cost_clips(direction):
    from metabench.rl.halfcheetah import HalfCheetahDir

    env = HalfCheetahDir()
    states = torch.tensor([STATE], dtype=torch.float64)
    wild = [3.0, -0.8, 0.3, -2.0, -0.2, 0.7]  # MuJoCo clamps the controls; the cost clips
    _, reward, _ = env.step(states, torch.tensor([[direction]]), torch.tensor([wild]))
    qpos, _ = mujoco_step(STATE, [1.0, -0.8, 0.3, -1.0, -0.2, 0.7])
    velocity = (qpos[0] - STATE[1]) / 0.05
    cost = 0.05 * (1 + 0.64 + 0.09 + 1 + 0.04 + 0.49)
    assert reward.item() == pytest.approx(direction * velocity - cost, abs=1e-5)


@needs_mujoco
def test_rewards_match_gymnasium_halfcheetah_v5():
    # Gymnasium's own environment with Finn et al.'s control weight: forward reward x_velocity,
    # the same model, frame skip and observation.
    import gymnasium

    from metabench.rl.halfcheetah import HalfCheetahDir, HalfCheetahVel

    gym_env = gymnasium.make("HalfCheetah-v5", ctrl_cost_weight=0.05).unwrapped
    gym_env.reset(seed=0)
    gym_env.set_state(np.array(STATE[1:10]), np.array(STATE[10:]))
    gym_env.data.qacc_warmstart[:] = 0
    observation, gym_reward, *_, info = gym_env.step(np.array(ACTION))
    states = torch.tensor([STATE], dtype=torch.float64)
    actions = torch.tensor([ACTION])
    next_states, forward, _ = HalfCheetahDir().step(states, torch.tensor([[1.0]]), actions)
    assert forward.item() == pytest.approx(gym_reward, abs=1e-5)
    assert HalfCheetahDir().observe(next_states)[0].numpy() == pytest.approx(observation, abs=1e-5)
    _, vel_reward, _ = HalfCheetahVel().step(states, torch.tensor([[1.0]]), actions)
    assert vel_reward.item() == pytest.approx(-abs(info["x_velocity"] - 1.0) + info["reward_ctrl"],
                                              abs=1e-5)
    gym_env.close()


@needs_mujoco
def test_tasks_are_in_range_and_rows_step_independently_of_their_batch():
    from metabench.rl.halfcheetah import HalfCheetahDir, HalfCheetahVel

    goals = HalfCheetahVel().sample_tasks(400, torch.Generator().manual_seed(1))
    assert goals.min() >= 0 and goals.max() <= 2 and goals.max() - goals.min() > 1.8
    directions = HalfCheetahDir().sample_tasks(400, torch.Generator().manual_seed(1))
    assert set(directions.flatten().tolist()) == {-1.0, 1.0}
    assert 150 < int((directions > 0).sum()) < 250
    env = HalfCheetahVel()
    starts = env.reset(goals[:5], torch.Generator().manual_seed(2))
    assert not torch.equal(starts[0], starts[1])
    assert (starts[:, 1:10].abs() <= 0.1).all() and starts[:, 0].eq(0).all()
    assert torch.equal(env.reset(goals[:2]), env.reset(goals[2:4]))  # no generator: no noise
    actions = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    together, rewards, _ = env.step(starts, goals[:5], actions)
    alone, reward, _ = env.step(starts[3:4], goals[3:4], actions[3:4])
    assert torch.equal(together[3:4], alone) and torch.equal(rewards[3:4], reward)


SEEDED = """
import json, torch
from metabench import registry
from metabench.episodes import EpisodeSampler
from metabench.protocol import TaskSpec
from metabench.rl.protocol import task_id, task_rollout
from metabench.rl.rollout import GaussianPolicy, exploration_noise, start_generator
dataset = registry.get_datasets()["halfcheetah-vel"].factory()
episode = EpisodeSampler(dataset, "test", TaskSpec(5, 3, 2, "rl"), seed=7).episode(4)
identity = task_id(episode.identity)
rows = episode.support_x[0][None].expand(3, -1)
torch.manual_seed(0)
policy = GaussianPolicy(17, 6)
print(json.dumps({
    "task": episode.support_x.tolist(),
    "start": dataset.env.reset(rows, start_generator(identity, "support")).tolist(),
    "noise": exploration_noise(dataset.env, [identity], "support", 3)[:5].tolist(),
    "returns": task_rollout(dataset.env, policy, episode, 3, "support").returns.tolist(),
}))
"""


@needs_mujoco
def test_tasks_starts_noise_and_returns_are_seeded_by_identity_across_processes():
    runs = [subprocess.run([sys.executable, "-c", SEEDED], capture_output=True, text=True,
                           timeout=120, check=True) for _ in range(2)]
    first, second = (json.loads(run.stdout) for run in runs)
    assert first == second
    dataset = registry.get_datasets()["halfcheetah-vel"].factory()
    spec = TaskSpec(5, 3, 2, "rl")
    here = EpisodeSampler(dataset, "test", spec, seed=7).episode(4).support_x.tolist()
    assert first["task"] == here
    other = EpisodeSampler(dataset, "test", spec, seed=7).episode(5).support_x.tolist()
    assert other != here
    assert len(set(map(tuple, first["start"]))) == 3  # each trajectory its own start


@needs_mujoco
def test_identical_policies_give_identical_returns():
    from metabench.rl.protocol import task_rollout
    from metabench.rl.rollout import GaussianPolicy

    dataset = registry.get_datasets()["halfcheetah-dir"].factory()
    episode = EpisodeSampler(dataset, "test", TaskSpec(5, 4, 2, "rl"), seed=0).episode(1)
    torch.manual_seed(3)
    policy = GaussianPolicy(17, 6)
    twin = GaussianPolicy(17, 6)
    twin.load_state_dict(policy.state_dict())
    first = task_rollout(dataset.env, policy, episode, 4, "query")
    second = task_rollout(dataset.env, twin, episode, 4, "query")
    assert torch.equal(first.returns, second.returns)
    assert torch.equal(first.observations, second.observations)
    other_role = task_rollout(dataset.env, twin, episode, 4, "support")
    assert not torch.equal(first.returns, other_role.returns)


@needs_mujoco
def test_maml_and_random_compare_on_halfcheetah_vel(tmp_path):
    frame = metabench.compare(datasets="halfcheetah-vel", algorithms=["maml", "random"],
                              shots=2, queries=2, episodes=3, budget="episodes:2",
                              val_episodes=1, val_points=2, progress=False, out=tmp_path)
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert set(cells["status"]) == {"ok"}, cells["reason"].to_dict()
    assert len(frame) == 6 and np.isfinite(frame["avg_return"]).all()
    board = metabench.leaderboard(tmp_path)
    assert set(board["setting"]) == {"halfcheetah-vel 2traj"}


WITHOUT_EXTRA = """
import sys
sys.modules["mujoco"] = None  # as if the mujoco extra were not installed
from metabench.cli import main
main(sys.argv[1:])
"""


def run_without_mujoco(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, *args], capture_output=True,
                          text=True, timeout=120)


def test_listing_and_use_without_the_extra(tmp_path):
    listing = run_without_mujoco("datasets", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    for name in ("halfcheetah-vel", "halfcheetah-dir"):
        assert rows[name]["task_type"] == "rl"
        assert "pip install 'metabench[mujoco]'" in rows[name]["note"]
    assert rows["navigation2d"]["note"] == ""
    table = run_without_mujoco("datasets")
    assert table.returncode == 0 and "'metabench[mujoco]'" in table.stdout
    used = run_without_mujoco("compare", "-d", "halfcheetah-vel", "-a", "random",
                              "--out", str(tmp_path))
    assert used.returncode == 2 and "Traceback" not in used.stderr
    assert used.stderr.strip().splitlines() == [
        "error: data set 'halfcheetah-vel' needs the mujoco extra (module 'mujoco' is not "
        "installed): pip install 'metabench[mujoco]'"]
