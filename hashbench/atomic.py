"""Files that are never seen half-written: write to a temporary file beside the target, fsync, rename;
and JSON lines appended with a single write.

Used for every file hashbench writes (results, codes, checkpoints, caches, split files).

A writer killed between creating its temporary file and the rename (SIGKILL, power loss) leaves
the temporary behind. Its name carries the writer's process id and a hash of the host name and
pid namespace (``.<name>.hb<pid>-<host>-<random>.tmp<suffix>``), so the next
:func:`atomic_write` of the same target removes the temporaries whose writer no longer runs on
this host, and only those: a concurrent writer's (another DDP process filling the same cache)
stays, as do temporaries written from other hosts of a shared file system, whose processes cannot
be seen from here.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from hashbench.errors import HashbenchError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_append_line(path: Path, obj: dict) -> None:
    """Append ``obj`` as one JSON line with a single ``write`` in append mode, then fsync.

    If the file does not end with a newline (a crash cut its last line), the new line starts on a
    fresh line, so the broken one stays isolated and is skipped (with a warning) when reading. A
    write that fails (a full disk) is undone: the file is cut back to its size before.
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
        try:
            while view:  # one write in practice; a short write (signal) continues with the rest
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, size)  # no torn line left behind to be warned about forever after
            if e.errno in _FULL:
                raise disk_full("appending a record to", path) from None
            raise HashbenchError(f"cannot append to {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


@functools.cache
def _host_tag() -> str:
    """8 hex digits naming this host and pid namespace: two containers sharing a host name (and
    a file system) see different processes under the same pid, so they must not judge each other's."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    # a hash, not the name itself: host names may hold dots and characters unfit for file names
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:  # cannot tell (e.g. pid out of range): keep its file
        return True
    return True


def remove_orphans(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` (see the module doc) whose writer process, on this host,
    no longer exists; return those removed. A reused pid keeps a file until that process ends."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.hb(\d+)-([0-9a-f]{{8}})-[^/]*\.tmp{re.escape(path.suffix)}")
    host = _host_tag()
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or m.group(2) != host or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
        except OSError:  # removed by another process meanwhile, or not ours to remove
            pass
    return removed


def atomic_write(path: Path, write) -> None:
    """Create ``path`` through ``write(tmp_path)`` on a temporary file in the same folder, fsync,
    then rename over ``path``: readers see the old file or the whole new one, never a part.

    The temporary name is unique (concurrent writers of one path, e.g. DDP processes filling a
    cache, do not collide) and ends with ``path``'s suffix, for writers that go by it. Temporaries
    of ``path`` left by dead writers of this host are removed first (:func:`remove_orphans`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.hb{os.getpid()}-{_host_tag()}-",
                               suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in _FULL:
            raise disk_full("writing", path) from None
        raise


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(doing: str, path: Path) -> HashbenchError:
    """The one-line error for a write that ran out of space (or quota): which file, how much is
    free, and that what was there before is intact."""
    try:
        free = f"{shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return HashbenchError(f"the disk is full: {doing} {path} failed ({free}); the file is as it was before: free "
                          "some space and run the same command again")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
