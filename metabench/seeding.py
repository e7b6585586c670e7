"""Seeds derived from names: the same parts give the same seed in every process and version."""

from __future__ import annotations

import hashlib
import random

import numpy as np

# SplitMix64 (Steele et al. 2014): the counters of the episode sampler and the batch sampler.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
RETRY = np.uint64(0x5851F42D4C957F2D)  # the offset of a redraw's (or a sub-stream's) counters
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, joined by ``|`` and hashed with blake2b.

    Stable across processes, machines and Python versions (``hash()`` is not), so a cell,
    an episode or a plugin's own random stream can be seeded from its identity.
    """
    text = "|".join(str(part) for part in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and random from one 63-bit seed."""
    import torch  # deferred: the seeds above are derived by commands that never load torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def splitmix(states: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, in place on a fresh ``uint64`` array of states."""
    z = states
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z
