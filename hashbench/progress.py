"""Progress bars with an ETA, drawn by tqdm: one for a pass (epochs, batches, queries), one for a sweep.

On a terminal tqdm redraws each bar in place. Off a terminal (a log file, a pipe, CI) a bar is
written as whole lines, and few of them: see :class:`Progress`.
"""
from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

# tqdm's monitor thread forces a redraw after ``maxinterval`` s without one: off a terminal that
# would add lines between the tenths, so it never fires.
NEVER = float("inf")
PASS_LINE = "{desc} {unit} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"


def duration(seconds: float) -> str:
    """``45s``, ``2m10s``, ``1h05m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Lines:
    """The file tqdm draws on off a terminal: tqdm redraws a bar as ``'\\r' + text + padding``; each
    redraw becomes one line, and a repeat of the line before is dropped (tqdm redraws the last
    state when a bar closes)."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, s: str) -> None:
        text = s.replace("\r", "").strip()
        if text and text != self.last:
            self.stream.write(text + "\n")
            self.last = text

    def flush(self) -> None:
        self.stream.flush()


def _bar(stream, tty: bool, line_format: str, **kwargs) -> tqdm:
    """A tqdm bar on ``stream``: tqdm's own bar on a terminal, ``line_format`` lines elsewhere."""
    if tty:
        return tqdm(file=stream, dynamic_ncols=True, **kwargs)
    # position 0: off a terminal a nested bar must not move a cursor that is not there; smoothing 0:
    # the ETA from the mean time per unit so far, steadier than tqdm's moving average over few lines
    return tqdm(file=Lines(stream), bar_format=line_format, position=0, maxinterval=NEVER, smoothing=0, **kwargs)


def note(text: str, stream=None) -> None:
    """One line to ``stream`` (stderr) that leaves the bars on it intact."""
    stream = stream or sys.stderr
    tqdm.write(text, file=stream)
    stream.flush()


class Progress:
    """A bar over the ``total`` units of one pass, ``label unit done/total [elapsed<ETA], status``, to
    stderr. The bar opens at the first :meth:`step` when ``total`` is not known before.

    Off a terminal: with ``every`` (an epoch loop) one line per unit done; otherwise nothing for a
    pass that ends within ``min_interval`` seconds, at most one line per tenth of the work and per
    ``min_interval`` seconds, and a last line when an earlier one was written.
    """

    def __init__(self, label: str, unit: str, total: int | None = None, *, initial: int = 0, stream=None,
                 min_interval: float = 2.0, every: bool = False):
        self.label, self.unit, self.stream = label, unit, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.min_interval, self.every = min_interval, every
        self.bar: tqdm | None = None
        if total is not None:
            self._open(total, initial)

    def _open(self, total: int, initial: int = 0) -> None:
        if self.tty:
            pace = {}
        elif self.every:  # a tiny delay: no line before the first unit is done
            pace = dict(miniters=1, mininterval=0, delay=1e-9)
        else:
            pace = dict(miniters=max(total // 10, 1), mininterval=self.min_interval,
                        delay=max(self.min_interval, 1e-9))
        self.bar = _bar(self.stream, self.tty, PASS_LINE, total=total, initial=initial, desc=self.label,
                        unit=self.unit, **pace)

    def advance(self, n: int = 1, status: str | None = None) -> None:
        """``n`` more units done; ``status`` (e.g. the epoch's loss) shown after the ETA."""
        if status is not None:
            self.bar.set_postfix_str(status, refresh=False)
        self.bar.update(n)

    def step(self, done: int, total: int) -> None:
        """``done`` of ``total`` units done (fits a ``progress(done, total)`` callback)."""
        if self.bar is None:
            self._open(total)
        self.bar.update(done - self.bar.n)

    @property
    def done(self) -> int:
        return self.bar.n if self.bar is not None else 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SweepProgress:
    """``run 3/12 (dsrh 32 bits seed 0) training … ETA 2m10s``: a bar over the runs of a sweep (stdout,
    next to the one-line summary of each finished run; a pass's bars go to stderr). Off a terminal,
    one such line before each computed run.

    The ETA sums, over the runs still to compute, the mean time of the finished runs of the same
    kind (method and whether it trains or only re-evaluates), or of all finished runs of that
    activity when none of its kind has finished yet — tqdm's own rate would mix minutes-long
    trainings with second-long re-scorings.
    """

    def __init__(self, total: int, pending: list[tuple[str, str]], stream=None):
        self.total, self.stream = total, stream or sys.stdout
        self.pending = list(pending)  # (kind, activity) of every run still to compute, in order
        self.times: dict[tuple[str, str], list[float]] = {}
        self.tty = self.stream.isatty()
        self.bar: tqdm | None = None

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
        if self.bar is None:  # opened late: no empty bar for a sweep with nothing to compute
            self.bar = _bar(self.stream, self.tty, "{desc}", total=self.total, leave=True, miniters=1,
                            mininterval=0)
        self.bar.n = index - 1  # the runs before it: computed or skipped
        self.bar.set_description_str(f"run {index}/{self.total} ({label}) {activity} … {self.eta()}")

    def finish(self, kind: tuple[str, str], seconds: float) -> None:
        self.times.setdefault(kind, []).append(seconds)
        self.drop(kind)

    def drop(self, kind: tuple[str, str]) -> None:
        """A run this process will not compute (another worker did): out of the ETA."""
        if kind in self.pending:
            self.pending.remove(kind)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.n = self.total
            self.bar.close()

