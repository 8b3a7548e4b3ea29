"""Progress lines with an ETA: one for a pass (an epoch, an extraction, scoring), one for a sweep."""
from __future__ import annotations

import sys
import time

import numpy as np


def duration(seconds: float) -> str:
    """``45s``, ``2m10s``, ``1h05m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A status line with an ETA (rewritten in place on a terminal; elsewhere one line per update,
    or for :meth:`step` one per tenth of the work and at most one per ``min_interval`` seconds,
    none for work done within ``min_interval``), to stderr."""

    def __init__(self, label: str, stream=None, min_interval: float = 2.0):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.min_interval = min_interval
        self.t0, self._tenth, self._printed = time.perf_counter(), -1, False
        self._last = self.t0

    def eta(self, done: int, total: int) -> str:
        """``ETA 2m10s`` from the mean time of the ``done`` units so far ('' when finished)."""
        if done <= 0 or done >= total:
            return ""
        return f"ETA {duration((time.perf_counter() - self.t0) / done * (total - done))}"

    def update(self, text: str, final: bool = False):
        end = "\n" if (final or not self.tty) else ""
        self.stream.write(("\r\033[K" if self.tty else "") + f"{self.label} {text}" + end)
        self.stream.flush()

    def step(self, done: int, total: int, what: str) -> None:
        """``label what done/total, ETA ...``; off a terminal only at each tenth of ``total``, not
        within ``min_interval`` s of the start or of the last line, and the last line only when an
        earlier one was written: a log gets nothing from a pass that takes less than that."""
        tenth, now = done * 10 // max(total, 1), time.perf_counter()
        finished = done >= total
        if self.tty or (finished and self._printed) or (
                not finished and tenth != self._tenth and now - self._last >= self.min_interval):
            self._tenth, self._last, self._printed = tenth, now, True
            self.update(f"{what} {done}/{total} {self.eta(done, total)}".rstrip(), final=finished)


class SweepProgress:
    """``run 3/12 (dsrh 32 bits seed 0) training … ETA 2m10s`` before each computed run (stdout, next to
    the one-line summary of each finished run; the training loop's per-epoch lines go to stderr).

    The ETA sums, over the runs still to compute, the mean time of the finished runs of the same
    kind (method and whether it trains or only re-evaluates), or of all finished runs of that
    activity when none of its kind has finished yet.
    """

    def __init__(self, total: int, pending: list[tuple[str, str]], stream=None):
        self.total, self.stream = total, stream or sys.stdout
        self.pending = list(pending)  # (kind, activity) of every run still to compute, in order
        self.times: dict[tuple[str, str], list[float]] = {}
        self.t0 = time.perf_counter()

    def _estimate(self, kind: tuple[str, str]) -> float | None:
        if kind in self.times:
            return float(np.mean(self.times[kind]))
        same = [t for (_, a), ts in self.times.items() if a == kind[1] for t in ts]
        return float(np.mean(same)) if same else None

    def eta(self) -> str:
        estimates = [self._estimate(k) for k in self.pending]
        if any(e is None for e in estimates):
            return "ETA after the first run" if not self.times else "ETA unknown"
        return f"ETA {duration(sum(estimates))}"

    def start(self, index: int, label: str, activity: str) -> None:
        self.stream.write(f"run {index}/{self.total} ({label}) {activity} … {self.eta()}\n")
        self.stream.flush()

    def finish(self, kind: tuple[str, str], seconds: float) -> None:
        self.times.setdefault(kind, []).append(seconds)
        if kind in self.pending:
            self.pending.remove(kind)
