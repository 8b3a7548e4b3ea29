"""Which process trains which run when several share one ``out=`` folder: claims with heartbeats.

Files under ``out/claims/`` (``<stem>`` is a run's ``<config_hash>-<bits>-<seed>``)::

    <stem>.claim    held by the worker training (or re-scoring) the run: a JSON line with its owner,
                    host, pid, a random token, the run's label and the command's run id. The owner
                    touches it every ``timeout / 10`` seconds (its heartbeat).
    <stem>.failed   the one-line error of a run that failed, and the run id of the command it failed
                    in: the other workers of that command leave the run; a later command retries it.
    .records.claim  the short lock held while one record is appended to ``results.jsonl``.
    .takeover-<stem>.claim  the short lock of a worker taking a stale claim over.

A claim is made by writing a temporary file and hard-linking it to its name (``os.link`` fails
when the name exists): atomic on a local disk and on NFS, which gives no atomic ``O_EXCL`` on old
versions and whose ``flock`` is not seen across machines. A claim is stale when its heartbeat is
older than ``timeout`` seconds by the *file system's* clock (the mtime of a file just written
beside it, so machines with skewed clocks agree), or at once when its writer was on this host and
no longer runs, or when its owner is the same worker restarted (a requeued cluster task). A stale
claim is taken over under a short lock (``.takeover-<stem>.claim``): the taker looks again once
inside, removes it and claims afresh, so two workers that both found it stale never both take it.
A worker checks that its claim is still its own before it appends the record (a worker stalled
past the timeout, whose run was taken over, records nothing). The only assumption about a shared
file system: ``link``, ``rename``, ``unlink`` and ``utime`` are atomic and visible to every machine
once they return (NFS with close-to-open consistency).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from hashbench.atomic import _alive, _host_tag
from hashbench.workers import WORKER_ID_ENV

TIMEOUT = 300.0  # seconds without a heartbeat before a claim is taken over


def owner_id() -> str:
    """Who this worker is, stable across a restart of the same worker: a cluster task's own id
    (``HASHBENCH_WORKER_ID``, set by the launcher), else host and pid."""
    return os.environ.get(WORKER_ID_ENV) or f"{socket.gethostname()}:{os.getpid()}"


def fs_now(folder: Path) -> float:
    """The file system's clock: the mtime of a file written in ``folder`` now."""
    probe = folder / f".now-{_host_tag()}-{os.getpid()}-{threading.get_ident()}"
    with open(probe, "w"):
        pass
    try:
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


class Claims:
    """The claims of one ``out=`` folder, as seen by one worker."""

    def __init__(self, out: str | Path, timeout: float = TIMEOUT, run_id: str = ""):
        self.dir = Path(out) / "claims"
        self.timeout, self.run_id = float(timeout), run_id
        self.owner = owner_id()
        self._held: dict[str, str] = {}  # stem -> token of the claims this worker holds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------------ reading
    def path(self, stem: str) -> Path:
        return self.dir / f"{stem}.claim"

    def read(self, stem: str) -> dict | None:
        """The claim on ``stem`` (with ``age``, seconds since its heartbeat), ``None`` when unclaimed."""
        path = self.path(stem)
        try:
            info = json.loads(path.read_text() or "{}")
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # being written or damaged: judged by its age alone
            try:
                info, mtime = {}, path.stat().st_mtime
            except OSError:
                return None
        info = info if isinstance(info, dict) else {}
        return {**info, "age": max(0.0, fs_now(self.dir) - mtime)}

    def stale(self, info: dict) -> str:
        """Why a claim may be taken over (``""``: it may not)."""
        if info.get("owner") == self.owner and info.get("pid") != os.getpid():
            return f"left by an earlier run of this worker ({self.owner})"
        if info.get("host_tag") == _host_tag() and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
            return f"its process ({info.get('host')} pid {info['pid']}) no longer runs"
        limit = info.get("timeout") if isinstance(info.get("timeout"), (int, float)) else self.timeout
        if info["age"] > limit:  # the holder's own timeout: its heartbeat beats at a tenth of it
            return f"no heartbeat for {info['age']:.0f} s (its claim_timeout={limit:g})"
        return ""

    # ------------------------------------------------------------------ claiming
    def acquire(self, stem: str, label: str = "") -> tuple[bool, dict | None, str]:
        """Try to claim ``stem``: ``(True, None, why)`` when this worker now holds it (``why``: the
        stale claim it took over, or ``""``), else ``(False, holder's claim, "")``."""
        if stem in self._held:
            return True, None, ""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        body = dict(owner=self.owner, host=socket.gethostname(), host_tag=_host_tag(), pid=os.getpid(), token=token,
                    run=label, run_id=self.run_id, timeout=self.timeout, since=time.strftime("%Y-%m-%dT%H:%M:%S"))
        tmp = self.dir / f".{stem}.{token}.tmp"
        tmp.write_text(json.dumps(body) + "\n")
        try:
            for _ in range(3):
                if self._link(tmp, stem, token):
                    return True, None, ""
                info = self.read(stem)
                if info is None:
                    continue  # released meanwhile: try again
                why = self.stale(info)
                if not why:
                    return False, info, ""
                if self._take_over(tmp, stem, token, info):
                    return True, None, why
            return False, self.read(stem), ""
        finally:
            tmp.unlink(missing_ok=True)

    def _link(self, tmp: Path, stem: str, token: str) -> bool:
        try:
            os.link(tmp, self.path(stem))
        except FileExistsError:
            return False
        with self._lock:
            self._held[stem] = token
        return True

    def _take_over(self, tmp: Path, stem: str, token: str, stale: dict) -> bool:
        """Replace the stale claim ``stale`` by this worker's. Takers of a run's claim go one at a
        time (a short lock) and look again once inside: two workers that both found it stale do not
        both take it, and one that judged an old claim never removes the claim that replaced it."""
        if stem.startswith("."):  # a short lock itself: moved aside, and put back if it was not the stale one
            aside = self.dir / f".{stem}.stale-{token}"
            try:
                os.rename(self.path(stem), aside)
            except FileNotFoundError:
                return self._link(tmp, stem, token)
            try:
                moved = json.loads(aside.read_text() or "{}").get("token")
            except (OSError, ValueError, AttributeError):
                moved = stale.get("token")
            if moved != stale.get("token"):
                try:
                    os.link(aside, self.path(stem))
                except FileExistsError:
                    pass
                aside.unlink(missing_ok=True)
                return False
            aside.unlink(missing_ok=True)
            return self._link(tmp, stem, token)
        with ShortLock(self.dir.parent, name=f".takeover-{stem}"):
            now = self.read(stem)
            if now is not None and (now.get("token") != stale.get("token") or not self.stale(now)):
                return False
            self.path(stem).unlink(missing_ok=True)
            return self._link(tmp, stem, token)

    def holds(self, stem: str) -> bool:
        """Whether the claim on ``stem`` is still this worker's (not taken over after a long stall)."""
        token = self._held.get(stem)
        if token is None:
            return False
        try:
            return json.loads(self.path(stem).read_text()).get("token") == token
        except (OSError, ValueError):
            return False

    def release(self, stem: str) -> None:
        with self._lock:
            token = self._held.pop(stem, None)
        if token is not None and self._is(stem, token):
            self.path(stem).unlink(missing_ok=True)

    def _is(self, stem: str, token: str) -> bool:
        try:
            return json.loads(self.path(stem).read_text()).get("token") == token
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------------ heartbeat
    def beat(self) -> None:
        """Touch every claim this worker holds (and still owns)."""
        with self._lock:
            held = dict(self._held)
        for stem, token in held.items():
            if self._is(stem, token):
                try:
                    os.utime(self.path(stem))
                except OSError:
                    pass

    def start(self) -> "Claims":
        """Heartbeats in a background thread until :meth:`close`."""
        if self._beat is None:
            def loop():
                while not self._stop.wait(self.timeout / 10):
                    self.beat()
            self._beat = threading.Thread(target=loop, name="hashbench-heartbeat", daemon=True)
            self._beat.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for stem in list(self._held):
            self.release(stem)

    # ------------------------------------------------------------------ failures
    def failed_path(self, stem: str) -> Path:
        return self.dir / f"{stem}.failed"

    def fail(self, stem: str, label: str, error: str) -> None:
        from hashbench.atomic import atomic_write_text

        atomic_write_text(self.failed_path(stem), json.dumps(dict(run=label, run_id=self.run_id, owner=self.owner,
                                                                  error=error.splitlines()[0][:500] if error else "",
                                                                  time=time.strftime("%Y-%m-%dT%H:%M:%S"))) + "\n")

    def failure(self, stem: str) -> dict | None:
        try:
            info = json.loads(self.failed_path(stem).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def clear_failure(self, stem: str) -> None:
        self.failed_path(stem).unlink(missing_ok=True)


class ShortLock:
    """A lock held for milliseconds (appending one record), on the same link-based scheme: taken
    over when its holder on this host is gone or it is older than ``timeout`` seconds."""

    def __init__(self, out: str | Path, name: str = ".records", timeout: float = 60.0):
        self.claims = Claims(out, timeout=timeout)
        self.name = name

    def __enter__(self):
        delay = 0.001
        while not self.claims.acquire(self.name)[0]:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return self

    def __exit__(self, *exc):
        self.claims.release(self.name)


__all__ = ["Claims", "ShortLock", "TIMEOUT", "fs_now", "owner_id"]
