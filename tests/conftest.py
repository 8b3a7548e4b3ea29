"""Fixtures shared by the whole suite."""
import io
import sys

import pytest
import torch


def _finished_sweep(root, *words) -> tuple:
    from hashbench.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HASHBENCH_CACHE", str(root / "cache"))
        buf = io.StringIO()
        mp.setattr(sys, "stdout", buf)
        assert main(["run", f"out={root / 'out'}", *words]) == 0
    return root / "out", buf.getvalue()


@pytest.fixture(scope="session")
def finished_sweep():
    """``finished_sweep(root, *words)``: ``hashbench run out=ROOT/out WORDS`` with its own cache
    under ``root`` and stdout captured; returns (the out folder, what the run printed). For
    module-scoped fixtures that tests only read."""
    return _finished_sweep


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a small shared machine torch's thread pool spins waiting for busy
    cores and makes tiny training steps many times slower; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def interrupt_after_first_epoch(monkeypatch):
    """Make the training loop raise KeyboardInterrupt (a kill) right after it reports epoch 1, its
    checkpoint written; the returned function stops it doing so (for the resuming run)."""
    import hashbench.progress as progress

    real = progress.Progress.advance

    def crash(self, n=1, status=None):
        real(self, n, status)
        if self.unit == "epoch" and self.done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.Progress, "advance", crash)
    return lambda: monkeypatch.setattr(progress.Progress, "advance", real)
