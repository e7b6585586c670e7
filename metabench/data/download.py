"""Fetching data set files, only when a user asks for it (``--download``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from metabench.errors import MetabenchError

TIMEOUT_S = 60.0


def download_file(
    url: str,
    destination: Path,
    dataset: str,
    check: Callable[[Path], bool] | None = None,
) -> Path:
    """Fetch ``url`` to ``destination`` through a temporary file and a rename.

    ``check(path)`` validates the downloaded file before it is renamed into place (say,
    that it is a zip); a failed download or check leaves nothing behind and raises one line
    naming the data set, the URL and the destination.
    """
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=destination.name + ".", suffix=".part", dir=destination.parent
        )
    except OSError as error:
        raise MetabenchError(
            f"{dataset}: cannot write to {destination.parent}: {error.strerror or error}"
        ) from None
    part = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            shutil.copyfileobj(r, file, length=1 << 20)
        if check is not None and not check(part):
            raise MetabenchError(f"{dataset}: the file downloaded from {url} is not valid")
        os.replace(part, destination)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise MetabenchError(
            f"{dataset}: download of {url} to {destination} failed: {_reason(error)}"
        ) from None
    finally:
        part.unlink(missing_ok=True)
    return destination


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error)
