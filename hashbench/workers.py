"""``workers=N``: one sweep shared by N worker processes on this machine.

Each worker is ``python -m hashbench.cli run`` with the same words (less ``workers=``): every
worker plans the whole sweep and claims runs one at a time (:mod:`hashbench.claims`), so the
workers never train the same run and a worker that dies leaves its runs to the others. They share
the command's run id (``HASHBENCH_RUN_ID``), so ``force=true`` means "recompute once in this
command", not once per worker. With GPUs each worker sees one of them (``CUDA_VISIBLE_DEVICES``,
round robin when there are more workers than GPUs); on the CPU the cores are divided between the
workers (``OMP_NUM_THREADS`` and the other thread pools' variables), since N processes each using
every core slow each other far more than N-fold. The launcher prints the tables once all workers
have stopped.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

RUN_ID_ENV = "HASHBENCH_RUN_ID"  # the command's run id, shared by its workers
WORKER_ENV = "HASHBENCH_WORKER"  # set in a worker: "i/N"; a worker leaves the tables to its launcher
WORKER_ID_ENV = "HASHBENCH_WORKER_ID"  # a worker's identity across restarts (a requeued cluster task)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
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
        env.update({v: share for v in _THREAD_VARS})
    return env


def _relay(stream, prefix: str, sink) -> None:
    for line in iter(stream.readline, ""):
        sink.write(prefix + line)
        sink.flush()
    stream.close()


def launch(words: list[str], n: int, run_id: str, device: str = "auto", sink=None) -> list[int]:
    """Start ``n`` workers of ``hashbench run WORDS`` and wait for them; their output, each line
    prefixed ``[worker i]``, goes to ``sink`` (stdout). Returns their exit statuses. Interrupted,
    the workers are interrupted too (they release their claims; their checkpoints stay)."""
    sink = sink or sys.stdout
    gpus = visible_gpus() if device != "cpu" else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    argv = [sys.executable, "-m", "hashbench.cli", "run", *worker_words(words)]
    procs, relays = [], []
    for i in range(n):
        p = subprocess.Popen(argv, env=worker_env(i, n, run_id, gpus, cores, device), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
        t = threading.Thread(target=_relay, args=(p.stdout, f"[worker {i}] ", sink), daemon=True)
        t.start()
        procs.append(p)
        relays.append(t)
    try:
        codes = [p.wait() for p in procs]
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


__all__ = ["RUN_ID_ENV", "WORKER_ENV", "WORKER_ID_ENV", "launch", "worker_env", "worker_words"]
