"""Seeds derived from names: the same parts give the same seed in every process and version."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


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
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
