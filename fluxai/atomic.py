"""Atomic file writes: a reader sees the old file or the whole new one, never half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: str | Path, directory: bool = False) -> Path:
    """A new, empty file (or folder) beside `path`, to be renamed onto it.

    Created with os.open/os.mkdir and the modes open() and mkdir() use, so the umask applies
    as for any file the user writes (mkstemp's are private), without touching the process's
    umask, which other threads (the server's) share."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary name beside `path`; when the block succeeds it becomes `path`, when
    it raises it is removed and `path` is untouched."""
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def torch_save(obj: object, path: str | Path) -> None:
    """torch.save through a temporary name: an interrupted run never leaves half a file."""
    import torch  # here, so that writing a PNG does not import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
