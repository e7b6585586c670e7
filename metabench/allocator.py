"""The C library's allocator, set for training on CPU: freed activations stay in the heap.

A Conv4 training step on 360 Omniglot images allocates and frees activation maps of 72 MB.
glibc serves blocks over 32 MB with ``mmap`` and returns them with ``munmap`` when freed, so
every step faults its largest tensors in again, page by page, zero-filled by the kernel: a
quarter of the step's time went to the system on a 2-core CPU. With ``mmap`` off and a high
trim threshold the heap keeps freed blocks for the next step (the numbers computed do not
change: only where the memory comes from). :func:`release_freed_memory` hands the kept memory
back, e.g. between profiled phases, so each phase's peak resident memory is its own.

Linux with glibc only; a no-op elsewhere, and when ``METABENCH_MALLOC=system`` or glibc's own
``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` variables are set (the user's choice wins).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

OPT_OUT_VARIABLE = "METABENCH_MALLOC"
GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
KEPT_BYTES = 1 << 30  # free memory at the top of the heap kept before trimming


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only: musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


def _chosen_by_user() -> bool:
    return (os.environ.get(OPT_OUT_VARIABLE, "").strip().lower() == "system"
            or any(name in os.environ for name in GLIBC_VARIABLES))


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse (once per process); True when set."""
    libc = _libc()
    if libc is None or _chosen_by_user():
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_BYTES))


def release_freed_memory() -> None:
    """Give the heap's free memory back to the system (after :func:`keep_freed_memory`)."""
    libc = _libc()
    if libc is not None and keep_freed_memory.cache_info().currsize and keep_freed_memory():
        libc.malloc_trim(0)
