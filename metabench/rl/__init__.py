"""Meta-reinforcement learning: task families as vectorised torch environments, seeded
rollouts, and the policy-gradient pieces the ``rl`` task type builds on."""
