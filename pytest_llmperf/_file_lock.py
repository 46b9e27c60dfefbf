"""An exclusive lock on a file that several processes (or runners sharing a directory) rewrite.

The lock is ``filelock``'s, on a hidden ``.NAME.lock`` beside ``NAME``. ``filelock`` leaves
that file in place on release, because removing it while another process waits on it could let
two processes hold "the lock" at once (each on a different file). Baseline directories are
committed to repositories, so a leftover lock file is junk there: this module removes it while
still holding the lock, and makes that safe by checking, after every acquisition, that the file
it locked is still the one at that path. A process that locked a file which was removed (or
replaced) meanwhile lets go and locks again. Where the locked descriptor cannot be inspected
(a ``filelock`` without it, a soft lock), the lock file is left in place: never unsafe, at worst
one empty hidden file. Loaders never mistake it for a baseline: they read ``*.json`` names.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

__all__ = ["LockTimeout", "exclusive", "lock_path"]


class LockTimeout(OSError):
    """Another process held the lock for longer than the caller would wait."""


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def exclusive(path: Path, *, timeout: float) -> Iterator[None]:
    """Hold the lock of ``path`` for the ``with`` block; :class:`LockTimeout` after
    ``timeout`` seconds of waiting."""
    where = lock_path(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        lock = filelock.FileLock(str(where))
        try:
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        except filelock.Timeout:
            raise LockTimeout(
                f"{where} has been locked by another process for {timeout:g} s (a run still "
                "saving, or one that hangs)"
            ) from None
        current = _still_at_path(lock, where)
        if current is not False:
            break
        lock.release()  # the file we locked was removed by its last holder: lock the new one
    try:
        yield
    finally:
        if current:
            # Removed while held: a waiter on this inode sees it gone and locks afresh.
            with contextlib.suppress(OSError):
                where.unlink()
        lock.release()


def _still_at_path(lock: filelock.BaseFileLock, where: Path) -> bool | None:
    """Whether the file ``lock`` holds is the one at ``where`` now; ``None`` when this
    ``filelock`` does not say which file it holds."""
    # filelock keeps the locked descriptor in its (private) context; read defensively so a
    # change there only costs the clean-up, never the lock.
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if not isinstance(fd, int):
        return None
    try:
        return os.path.samestat(os.fstat(fd), os.stat(where))
    except FileNotFoundError:
        return False
    except OSError:
        return None
