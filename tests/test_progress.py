"""Progress bars (tqdm) off a terminal: few whole lines, an ETA, nothing for a short pass."""
import io

import pytest

from hashbench.progress import Lines, Progress, SweepProgress, duration, note


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, set by the test: ``clock[0] = t``."""
    now = [0.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    return now


def test_duration_format():
    assert [duration(s) for s in (0, 45.4, 130, 3900)] == ["0s", "45s", "2m10s", "1h05m"]


def written(clock, total, seconds_per_step, min_interval, every=False):
    out = io.StringIO()
    with Progress("extract", "batch", total, stream=out, min_interval=min_interval, every=every) as p:
        for i in range(1, total + 1):
            clock[0] = i * seconds_per_step
            p.advance()
    return out.getvalue().splitlines()


def test_each_tenth_once_off_a_terminal(clock):
    lines = written(clock, 100, 1.0, min_interval=0)
    assert [l.split()[2] for l in lines] == [f"{10 * k}/100" for k in range(1, 11)]
    # the mean time per unit so far: 10 units in 10 s leave 90 s
    assert lines[0] == "extract batch 10/100 [00:10<01:30]"
    assert lines[-1] == "extract batch 100/100 [01:40<00:00]"


def test_at_most_one_line_per_min_interval(clock):
    # 20 s in all: a tenth every 2 s, a line at most every 5 s (t = 5, 10, 15, 20)
    lines = written(clock, 100, 0.2, min_interval=5.0)
    assert [int(l.split()[2].split("/")[0]) for l in lines] == [25, 50, 75, 100]


def test_a_short_pass_writes_nothing_off_a_terminal(clock):
    assert written(clock, 12, 0.1, min_interval=2.0) == []  # 1.2 s in all


def test_an_epoch_loop_writes_one_line_per_epoch_with_its_status(clock):
    out = io.StringIO()
    with Progress("dsrh 32 bits seed 0", "epoch", 4, initial=1, stream=out, every=True) as p:  # resumed at 1
        for epoch in range(2, 5):
            clock[0] = 10.0 * (epoch - 1)
            p.advance(status=f"loss {1 / epoch:.4f}")
    assert out.getvalue().splitlines() == [
        "dsrh 32 bits seed 0 epoch 2/4 [00:10<00:20], loss 0.5000",
        "dsrh 32 bits seed 0 epoch 3/4 [00:20<00:10], loss 0.3333",
        "dsrh 32 bits seed 0 epoch 4/4 [00:30<00:00], loss 0.2500",
    ]


def test_step_opens_the_bar_at_the_first_callback(clock):
    out = io.StringIO()
    with Progress("scoring", "queries", stream=out, min_interval=0) as p:
        assert p.done == 0
        for done in (250, 500, 1000):
            clock[0] += 1
            p.step(done, 1000)
        assert p.done == 1000
    # the bar's clock starts at the first callback, which is therefore not a line of its own
    assert [l.split()[2] for l in out.getvalue().splitlines()] == ["500/1000", "1000/1000"]


def test_sweep_lines_carry_the_kind_aware_eta(clock):
    out = io.StringIO()
    sweep = SweepProgress(3, [("dsrh", "train"), ("dsrh", "train"), ("lsh", "train")], out)
    sweep.start(1, "dsrh 16 bits seed 0", "training")
    sweep.finish(("dsrh", "train"), 60.0)
    note("  dsrh 16 bits seed 0: map 0.5", out)  # a run's summary between the bar's lines
    sweep.start(2, "dsrh 32 bits seed 0", "training")
    sweep.finish(("dsrh", "train"), 80.0)
    sweep.start(3, "lsh 16 bits seed 0", "fitting")  # no lsh finished: the mean of all trainings
    sweep.close()
    assert out.getvalue().splitlines() == [
        "run 1/3 (dsrh 16 bits seed 0) training … ETA after the first run",
        "  dsrh 16 bits seed 0: map 0.5",
        "run 2/3 (dsrh 32 bits seed 0) training … ETA 2m00s",
        "run 3/3 (lsh 16 bits seed 0) fitting … ETA 1m10s",
    ]


def test_a_sweep_with_nothing_to_compute_writes_no_bar():
    out = io.StringIO()
    SweepProgress(2, [], out).close()
    assert out.getvalue() == ""


def test_lines_turns_redraws_into_lines_and_drops_a_repeat():
    out = io.StringIO()
    lines = Lines(out)
    for s in ("\ra 1/2   ", "\ra 1/2", "\r", "\ra 2/2", "\ra 2/2 "):
        lines.write(s)
    assert out.getvalue() == "a 1/2\na 2/2\n"
