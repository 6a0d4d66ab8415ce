"""Files that must survive a crash whole: written aside, fsynced, renamed over the old one, directory fsynced.

Readers see the old file or the new one, never a mix; after ``write_atomically`` returns, a machine crash
cannot bring the old one back.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new or deleted file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` durably and atomically (the temporary file is ``.NAME.tmp`` beside it)."""
    aside = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(aside, path)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
