"""Atomic writes: temporaries of writers killed mid-write are cleaned up, live writers' are kept."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hashbench.atomic import _host_tag, atomic_write, atomic_write_text


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temporary(folder: Path, target: str, pid: int, host: str | None = None, suffix: str = "") -> Path:
    """A temporary as atomic_write names it, as if left by writer ``pid``."""
    path = folder / f".{target}.hb{pid}-{host or _host_tag()}-k3x9_q2a.tmp{suffix}"
    path.write_bytes(b"half a file")
    return path


def test_a_killed_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    orphan = temporary(tmp_path, "cache.npz", dead_pid(), suffix=".npz")
    live = temporary(tmp_path, "cache.npz", os.getppid(), suffix=".npz")  # pytest's parent: running
    elsewhere = temporary(tmp_path, "cache.npz", dead_pid(), host="0badf00d", suffix=".npz")
    other_target = temporary(tmp_path, "other.npz", dead_pid(), suffix=".npz")
    atomic_write_text(tmp_path / "cache.npz", "whole")
    assert (tmp_path / "cache.npz").read_text() == "whole"
    assert not orphan.exists()
    assert live.exists()  # a concurrent writer (another DDP process) is still writing it
    assert elsewhere.exists()  # another host's (or container's) processes cannot be judged from here
    assert other_target.exists()  # only the target being written is cleaned


def test_a_sigkilled_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "multidigits-abc.npz"
    code = ("import os, signal, sys; from pathlib import Path; from hashbench.atomic import atomic_write\n"
            "def write(tmp):\n"
            "    Path(tmp).write_bytes(b'x' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write(Path({str(target)!r}), write)\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".multidigits-abc.npz.hb") and left[0].endswith(".tmp.npz")
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"complete"))
    assert [p.name for p in tmp_path.iterdir()] == [target.name] and target.read_bytes() == b"complete"


def test_the_temporary_name_carries_the_writers_pid(tmp_path):
    seen = []
    atomic_write(tmp_path / "a.json", lambda tmp: (seen.append(Path(tmp).name), Path(tmp).write_text("{}")))
    assert seen[0].startswith(f".a.json.hb{os.getpid()}-{_host_tag()}-") and seen[0].endswith(".tmp.json")
