"""Files that are never seen half-written: write to a temporary file beside the target, fsync, rename;
and JSON lines appended with a single write.

Used for every file hashbench writes (results, codes, checkpoints, caches, split files).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_append_line(path: Path, obj: dict) -> None:
    """Append ``obj`` as one JSON line with a single ``write`` in append mode, then fsync.

    If the file does not end with a newline (a crash cut its last line), the new line starts on a
    fresh line, so the broken one stays isolated and is skipped (with a warning) when reading.
    """
    data = (json.dumps(obj) + "\n").encode()
    assert b"\n" not in data[:-1]  # json.dumps never writes a raw newline
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:  # one write in practice; a short write (disk full, signal) continues with the rest
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Create ``path`` through ``write(tmp_path)`` on a temporary file in the same folder, fsync,
    then rename over ``path``: readers see the old file or the whole new one, never a part.

    The temporary name is unique (concurrent writers of one path, e.g. DDP processes filling a
    cache, do not collide) and ends with ``path``'s suffix, for writers that go by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
