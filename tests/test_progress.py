"""Progress lines: ETA arithmetic and throttling off a terminal."""
import io

from hashbench.progress import Progress, duration


def test_duration_format():
    assert [duration(s) for s in (0, 45.4, 130, 3900)] == ["0s", "45s", "2m10s", "1h05m"]


def test_eta_from_mean_unit_time(monkeypatch):
    clock = iter([100.0, 130.0])  # created at t=100; 3 of 10 units done at t=130 → 10 s each
    monkeypatch.setattr("hashbench.train.time.perf_counter", lambda: next(clock))
    p = Progress("x", stream=io.StringIO())
    assert p.eta(3, 10) == "ETA 1m10s"
    assert p.eta(10, 10) == "" and p.eta(0, 10) == ""


def test_step_prints_each_tenth_once_off_a_terminal():
    out = io.StringIO()
    p = Progress("extract", stream=out, min_interval=0)
    for i in range(1, 101):
        p.step(i, 100, "batch")
    lines = out.getvalue().splitlines()
    assert [l.split()[2] for l in lines] == ["1/100"] + [f"{10 * k}/100" for k in range(1, 11)]
    assert lines[-1] == "extract batch 100/100" and lines[1].startswith("extract batch 10/100 ETA ")


def steps_printed(monkeypatch, total, seconds_per_step, min_interval):
    """The ``done`` counts a Progress writes off a terminal, on a clock of fixed steps from 0."""
    now = [0.0]
    monkeypatch.setattr("hashbench.train.time.perf_counter", lambda: now[0])
    out = io.StringIO()
    p = Progress("extract", stream=out, min_interval=min_interval)
    for i in range(1, total + 1):
        now[0] = i * seconds_per_step
        p.step(i, total, "batch")
    return [int(l.split()[2].split("/")[0]) for l in out.getvalue().splitlines()]


def test_step_off_a_terminal_waits_min_interval_between_lines(monkeypatch):
    # 20 s in all: a tenth every 2 s, a line at most every 5 s (t = 5, 10, 15), and the last line
    assert steps_printed(monkeypatch, 100, 0.2, min_interval=5.0) == [25, 50, 75, 100]


def test_a_short_pass_writes_nothing_off_a_terminal(monkeypatch):
    assert steps_printed(monkeypatch, 12, 0.1, min_interval=2.0) == []  # 1.2 s in all
