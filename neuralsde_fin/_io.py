"""Atomic file writes: one home for "temp file, fsync, rename, the mode a user expects".

Every file the package writes (checkpoints, scenarios, reports, figures, the native-kernel
index) goes through :func:`atomic_writer`: the content is written to a temporary file in the
target's folder, flushed to disk, given the permissions a new file of this user gets (0666
minus the umask; ``mkstemp`` alone makes 0600), and renamed over the target. A crash leaves
either the old file or none, never a truncated one. A leaf module.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "umask_mode"]


def umask_mode() -> int:
    """The mode of a new regular file of this process: 0o666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is fsynced, chmodded and renamed.

    The caller writes the whole content to the yielded path (by name: pyarrow, torch.save and
    matplotlib all accept one). On an exception the temporary file is removed and ``path`` is
    untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
