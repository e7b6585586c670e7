"""Output files written whole or not at all: a temporary file in the target folder, renamed
onto the target when complete, with the mode the umask gives. An interrupted or failed write
leaves the previous file as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metabench.errors import MetabenchError


def check_output_file(path: Path, what: str = "") -> None:
    """Fail in one line when ``path`` cannot be an output file (it is a folder)."""
    if path.is_dir():
        raise MetabenchError(f"cannot write {_target(path, what)}: it is a folder; expected a "
                             "file name")


@contextmanager
def atomic_path(path: Path, what: str = "") -> Iterator[Path]:
    """A path named like ``path`` in a new hidden folder beside it, renamed onto ``path``
    when the block succeeds; an error or interrupt removes it and leaves ``path`` alone.

    Writers see the real file name (an HTML page titled by it, a format chosen by suffix).
    A folder that cannot be written is a one-line :class:`MetabenchError` naming the path.
    """
    path = Path(path)
    check_output_file(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    except OSError as error:
        raise MetabenchError(f"cannot write {_target(path, what)}: {error.strerror or error}") from None
    temporary = folder / path.name
    try:
        yield temporary
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except OSError as error:
        raise MetabenchError(f"cannot write {_target(path, what)}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_text_atomic(path: Path, text: str, what: str = "") -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, what) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def file_mode() -> int:
    """The mode a new file gets under the current umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _target(path: Path, what: str) -> str:
    return f"{what} to {path}" if what else str(path)
