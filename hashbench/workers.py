"""``workers=N``: one sweep shared by N worker processes on this machine.

Worker 0 is the command's own process (it has imported and checked everything already); the
others are ``python -m hashbench.cli run`` with the same words (less ``workers=``). Every worker
plans the whole sweep and claims runs one at a time (:mod:`hashbench.claims`), so the workers
never train the same run and a worker that dies leaves its runs to the others. They share
the command's run id (``HASHBENCH_RUN_ID``), so ``force=true`` means "recompute once in this
command", not once per worker. With GPUs each worker sees one of them (``CUDA_VISIBLE_DEVICES``,
round robin when there are more workers than GPUs); on the CPU the cores are divided between the
workers (``OMP_NUM_THREADS`` and the other thread pools' variables), since N processes each using
every core slow each other far more than N-fold. The launcher prints the tables once all workers
have stopped.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout

RUN_ID_ENV = "HASHBENCH_RUN_ID"  # the command's run id, shared by its workers
WORKER_ENV = "HASHBENCH_WORKER"  # set in a worker: "i/N"; a worker leaves the tables to its launcher
WORKER_ID_ENV = "HASHBENCH_WORKER_ID"  # a worker's identity across restarts (a requeued cluster task)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")
_LAUNCH_KEYS = ("workers", "launcher")


def worker_words(words: list[str]) -> list[str]:
    """The command's words as one worker runs them: without the keys that launched it."""
    return [w for w in words if w.partition("=")[0] not in _LAUNCH_KEYS]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given:
        return [g.strip() for g in given.split(",") if g.strip()][:torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(i: int, n: int, run_id: str, gpus: list[str], cores: int, device: str) -> dict[str, str]:
    """The environment of worker ``i`` of ``n``."""
    env = dict(os.environ, **{RUN_ID_ENV: run_id, WORKER_ENV: f"{i}/{n}", "PYTHONUNBUFFERED": "1"})
    if gpus and device != "cpu":
        env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
    else:
        share = str(max(1, cores // n))
        env.update({v: share for v in THREAD_VARS})
    return env


class _Lines(io.TextIOBase):
    """A text stream that hands ``sink`` whole lines, each behind ``prefix``, under ``lock``: the
    launcher's own worker writes through it while the relays write the others' lines."""

    def __init__(self, sink, prefix: str, lock: threading.Lock):
        super().__init__()
        self.sink, self.prefix, self.lock, self.part = sink, prefix, lock, ""

    def write(self, text: str) -> int:
        *lines, self.part = (self.part + text).split("\n")
        if lines:
            with self.lock:
                self.sink.write("".join(f"{self.prefix}{line}\n" for line in lines))
                self.sink.flush()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self.part:
            self.write("\n")
        super().close()


def _relay(stream, prefix: str, sink, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sink.write(prefix + line)
            sink.flush()
    stream.close()


@contextmanager
def _as_worker(i: int, n: int, run_id: str, cores: int, gpus: list[str], device: str):
    """This process as worker ``i`` of ``n``: its environment marks, and on the CPU its share of the
    cores in each thread pool (the variables a started worker gets are read once, at import)."""
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    saved = {k: os.environ.get(k) for k in (RUN_ID_ENV, WORKER_ENV)}
    os.environ.update({RUN_ID_ENV: run_id, WORKER_ENV: f"{i}/{n}"})
    threads = (torch.get_num_threads(), numba.get_num_threads())
    share = max(1, cores // n)
    on_cpu = not gpus or device == "cpu"
    try:
        if on_cpu:
            torch.set_num_threads(share)
            numba.set_num_threads(min(share, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(limits=share) if on_cpu else nullcontext():
            yield
    finally:
        torch.set_num_threads(threads[0])
        numba.set_num_threads(threads[1])
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def launch(words: list[str], n: int, run_id: str, device: str = "auto", sink=None, here=None) -> list[int]:
    """Start ``n`` workers of ``hashbench run WORDS`` and wait for them; their output, each line
    prefixed ``[worker i]``, goes to ``sink`` (stdout). Returns their exit statuses. Interrupted,
    the workers are interrupted too (they release their claims; their checkpoints stay).

    With ``here`` (``here(stream)`` runs one worker in this process and returns its exit status),
    worker 0 is this process: it has imported and checked everything already, so it computes while
    the others start up (seconds each: torch, scikit-learn and the data). Without GPUs it keeps to
    its share of the cores; with them it uses the first, as a started worker 0 would."""
    sink = sink or sys.stdout
    gpus = visible_gpus() if device != "cpu" else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    argv = [sys.executable, "-m", "hashbench.cli", "run", *worker_words(words)]
    lock = threading.Lock()
    procs, relays = [], []
    for i in range(1 if here else 0, n):
        p = subprocess.Popen(argv, env=worker_env(i, n, run_id, gpus, cores, device), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
        t = threading.Thread(target=_relay, args=(p.stdout, f"[worker {i}] ", sink, lock), daemon=True)
        t.start()
        procs.append(p)
        relays.append(t)
    codes = []
    try:
        if here:
            stream = _Lines(sink, "[worker 0] ", lock)
            try:
                with _as_worker(0, n, run_id, cores, gpus, device), redirect_stdout(stream), redirect_stderr(stream):
                    codes.append(here(stream))
            finally:
                stream.close()
        codes += [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(2)  # SIGINT: each worker stops as an interrupted run does
        for p in procs:
            p.wait()
        raise
    for t in relays:
        t.join()
    return codes


__all__ = ["RUN_ID_ENV", "THREAD_VARS", "WORKER_ENV", "WORKER_ID_ENV", "launch", "worker_env", "worker_words"]
