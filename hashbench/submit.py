"""``launcher=submitit``: a sweep as a job array of workers on one ``out=`` folder.

Each task of the array is a worker (:mod:`hashbench.workers`): it runs the whole sweep's
``hashbench run`` and claims runs one at a time, so the array needs no partition of the runs and
tolerates tasks that start late, die or are requeued. The engine is submitit: SLURM
(``submit.cluster=slurm``, or ``auto`` where ``sbatch`` is found) or its local executor
(``submit.cluster=local``: the tasks are processes on this machine, the same code path — what the
tests run). ``out=`` must be on a file system every node sees (see :mod:`hashbench.claims` for
what it must guarantee).

A task with ``submit.gpus_per_task=N > 1`` runs N processes, one per GPU, and each of its runs is a
DDP run over them (``launcher=pytorch`` inside the task; its rank 0 claims for the group). A task
stopped by its time limit or by preemption is requeued (submitit's ``checkpoint`` hook) under the
same job id: it takes its own claim back at once and resumes the run from its last epoch checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

from hashbench.errors import HashbenchError
from hashbench.workers import RUN_ID_ENV, WORKER_ENV, WORKER_ID_ENV, worker_words

MAX_TASKS = 64  # default array size cap: more tasks than runs only wait


class Worker:
    """One task of the array: ``hashbench run WORDS`` as a worker of the command ``run_id``."""

    def __init__(self, words: list[str], run_id: str, cwd: str):
        self.words, self.run_id, self.cwd = list(words), run_id, cwd

    def __call__(self) -> int:
        import submitit

        job = submitit.JobEnvironment()
        os.chdir(self.cwd)  # relative paths in the words mean what they meant where the command was typed
        os.environ.update({RUN_ID_ENV: self.run_id, WORKER_ENV: f"{job.job_id}",
                           WORKER_ID_ENV: f"{job.cluster}:{job.job_id}"})  # the same after a requeue
        words = list(self.words)
        if job.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            words.append("launcher=pytorch")
        from hashbench.cli import main

        status = main(["run", *words])
        if status != 0:
            raise RuntimeError(f"hashbench run stopped with exit status {status} (the task's log says why)")
        return status

    def checkpoint(self, *args, **kwargs):
        """Called by submitit when the task is preempted or reaches its time limit: requeue it as
        it is (the requeued task resumes from hashbench's own per-epoch checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(Worker(self.words, self.run_id, self.cwd))


def executor_parameters(sub: dict, run_id: str) -> dict:
    """The submitit parameters of the ``submit`` section."""
    gpus = sub["gpus_per_task"]
    params = dict(name=f"hashbench-{run_id}", timeout_min=sub["timeout_min"], nodes=1,
                  tasks_per_node=max(1, gpus), gpus_per_node=gpus, cpus_per_task=sub["cpus_per_task"],
                  slurm_array_parallelism=sub["array_parallelism"])
    if sub["partition"]:
        params["slurm_partition"] = sub["partition"]
    if sub["mem_gb"]:
        params["mem_gb"] = sub["mem_gb"]
    params.update(sub["options"])
    return params


def submit(run, words: list[str], stream=None) -> int:
    """Submit the sweep's job array; print its job ids; with ``submit.wait=true`` wait for it and
    print the tables."""
    import sys

    from hashbench.runner import Runner
    from hashbench.stored import new_run_id

    stream = stream or sys.stdout
    try:
        import submitit
    except ImportError:
        raise HashbenchError("launcher=submitit needs the submitit package: pip install 'hashbench[cluster]'") \
            from None
    cfg, sub = run.cfg, run.cfg["submit"]
    run_id = new_run_id()
    planner = Runner(type(run)({**cfg, "launcher": "none"}, run.dataset_name, run.method_overrides, run.methods))
    planner.run_id = run_id
    jobs = planner.plan()
    done = planner.store.done()
    todo = sum(j.key + j.conventions not in done for j in jobs) if not cfg["force"] else len(jobs)
    tasks = sub["tasks"] or max(1, min(MAX_TASKS, todo))
    out = Path(cfg["out"]).resolve()
    folder = Path(sub["folder"]) if sub["folder"] else out / "submitit" / run_id
    cluster = None if sub["cluster"] == "auto" else sub["cluster"]
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    try:
        executor.update_parameters(**executor_parameters(sub, run_id))
    except (ValueError, TypeError, NameError) as e:
        raise HashbenchError(f"submit: submitit refused the parameters: {str(e).splitlines()[0]}") from None
    out.mkdir(parents=True, exist_ok=True)
    planner.save_plan(jobs)  # hashbench status shows the sweep from now on
    task_words = [*worker_words(words), f"out={out}"]
    worker = Worker(task_words, run_id, os.getcwd())
    with executor.batch():
        submitted = [executor.submit(worker) for _ in range(tasks)]
    ids = [j.job_id for j in submitted]
    stream.write(f"hashbench: submitted {tasks} worker task{'s' if tasks > 1 else ''} to {executor.cluster} for "
                 f"{todo} of {len(jobs)} runs (run {run_id}): job {' '.join(ids)}\n"
                 f"  logs: {folder}\n  progress: hashbench status out={out}\n")
    stream.flush()
    if not sub["wait"]:
        return 0
    failed = []
    for job in submitted:
        try:
            job.result()
        except Exception as e:  # submitit's FailedJobError carries the task's traceback: its first line here
            failed.append(f"job {job.job_id}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    planner.print_tables(jobs)
    if failed:
        raise HashbenchError(f"{len(failed)} of {tasks} tasks failed ({failed[0]}); their logs are in {folder}")
    return 0


__all__ = ["Worker", "executor_parameters", "submit"]
