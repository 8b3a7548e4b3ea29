"""The declared schema of every config section: keys, what each may be, its default, one line of help.

``train``, ``eval`` and ``classic`` are declared here; ``backbone``, ``dataset`` and ``method``
are declared by the registered class their ``type`` names (its constructor and its
``_parameter_constraints``, see :mod:`hashbench.params`); :data:`RUN` lists the top-level keys.
Defaults live here only: code reads a section through ``SCHEMA.check(section)``.
"""
from __future__ import annotations

from hashbench.params import Field, Flag, Interval, ListOf, Options, Schema

TRAIN = Schema("train", {
    "epochs": Field([Interval(int, 1, 100000)], 20, "training epochs"),
    "batch_size": Field([Interval(int, 2, None)], 64, "the global batch (split over the processes of a DDP run)"),
    "optimizer": Field([Options("sgd", "adamw")], "adamw", "sgd or adamw"),
    "lr": Field([Interval(float, 0, None, closed="neither")], 1e-3, "base learning rate (methods multiply it "
                                                                    "per parameter group: lr_mult)"),
    "momentum": Field([Interval(float, 0, 1, closed="left")], 0.9, "SGD momentum"),
    "weight_decay": Field([Interval(float, 0, None)], 5e-4, "weight decay"),
    "cosine": Field([Flag()], False, "cosine decay of every learning rate over training"),
    "precision": Field([Options("fp32", "bf16", "fp16")], "fp32", "fp32, or bf16/fp16 autocast on CUDA "
                                                                  "(on the CPU: fp32 with a warning)"),
    "workers": Field([Interval(int, 0, None)], 0, "DataLoader worker processes"),
    "encode_batch_size": Field([Interval(int, 1, None)], 256, "batch size when encoding"),
    "channels_last": Field([Flag(), None], None, "channels-last memory format (default: on CUDA only)"),
    "sync_bn": Field([Flag()], True, "distributed CUDA runs: BatchNorm statistics over the global batch"),
    "augment": Field([Options("none", "flip", "standard")], "none",
                     "training-time augmentation: none, flip (random horizontal flip), standard (resize 256, random "
                     "crop 224, flip; evaluation: resize 256, centre crop 224)"),
    "augment_on": Field([Options("auto", "loader", "device")], "auto",
                        "where train.augment's random crops and flips run: loader (per image, torchvision), device "
                        "(on the batch where it trains), auto (device on CUDA, else loader); not part of the config "
                        "hash"),
    "select": Field([str, None], None, "model selection: keep the epoch that scores best by this metric (e.g. "
                                        "map@1000) with the val split as queries against the training set; "
                                        "none: the last epoch (the papers' practice)"),
    "select_every": Field([Interval(int, 1, None)], 1, "with train.select: validate every N epochs and after "
                                                       "the last"),
    "log": Field([Options("none", "tensorboard", "wandb")], "none",
                 "per-epoch loss terms and learning rates to TensorBoard (out/logs/) or wandb (offline unless "
                 "WANDB_MODE or WANDB_API_KEY is set); not part of the config hash"),
})

# train keys that change what is written about a run, or where its work runs (like device), not what it
# computes: left out of the config hash
UNHASHED_TRAIN_KEYS = ("log", "augment_on")

EVAL = Schema("eval", {
    "metrics": Field([ListOf(str, min_len=1)],
                     ["map", "map@1000", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2"],
                     "metrics every run computes (hashbench list metrics)"),
    "tables": Field([ListOf(str, min_len=1)], ["map", "wmap@5000", "ndcg@100", "acg@100"],
                    "metrics printed as tables; each one of eval.metrics"),
    "ties": Field([str], "expected", "expected, index or random:SEED"),
    "ap_denominator": Field([Options("retrieved", "min_r_k")], "retrieved", "AP@K divides by the relevant "
                                                                            "retrieved, or by min(R, K)"),
    "no_relevant": Field([Options("zero", "skip")], "zero", "queries without a relevant item count 0, or "
                                                            "are skipped"),
})

CLASSIC = Schema("classic", {
    "features": Field([Options("backbone", "pixels")], "backbone", "what classic methods hash: the frozen "
                                                                   "backbone's features or raw pixels"),
})

SUBMIT = Schema("submit", {
    "cluster": Field([Options("auto", "slurm", "local")], "auto",
                     "submitit's executor: auto (SLURM when sbatch is found, else local), slurm, or local (the "
                     "tasks run as processes on this machine)"),
    "tasks": Field([Interval(int, 1, None), None], None, "tasks of the job array (workers on out=); default: one "
                                                         "per run to compute, at most 64"),
    "array_parallelism": Field([Interval(int, 1, None)], 16, "tasks of the array running at once"),
    "partition": Field([str, None], None, "SLURM partition"),
    "gpus_per_task": Field([Interval(int, 0, None)], 0, "GPUs of each task; more than 1: each run of the task is "
                                                        "a DDP run over them (one process per GPU)"),
    "cpus_per_task": Field([Interval(int, 1, None)], 4, "CPU cores of each task (each process of a DDP task)"),
    "mem_gb": Field([Interval(float, 0, None, closed="neither"), None], None, "memory of each task, GiB"),
    "timeout_min": Field([Interval(int, 1, None)], 240, "wall time of each task, minutes (a task that reaches it "
                                                        "is requeued and resumes)"),
    "folder": Field([str, None], None, "submitit's logs and pickles; default OUT/submitit/<run id>"),
    "options": Field([dict], {}, "further submitit parameters, passed as they are (e.g. "
                                 "dict(slurm_account='x', slurm_qos='y'))"),
    "wait": Field([Flag()], False, "wait for the array to finish and print the tables (default: print the job "
                                   "ids and return)"),
})

SECTIONS = {"train": TRAIN, "eval": EVAL, "classic": CLASSIC, "submit": SUBMIT}

# The top-level keys of a run config (files and words). The sections backbone, dataset and method
# are dicts checked against their registered classes.
RUN = Schema("run", {
    "methods": Field([ListOf(str, min_len=1)], None, "method names (no default here: configs/default.py sets "
                                                     "the default run's)"),
    "bits": Field([ListOf(Interval(int, 1, 1024), min_len=1)], [16, 32, 48, 64], "code lengths"),
    "seeds": Field([ListOf(Interval(int, 0, 2**32 - 1), min_len=1)], [0], "seeds"),
    "device": Field([str], "auto", "auto, cpu, cuda or cuda:N"),
    "out": Field([str], "out", "output folder"),
    "plugins": Field([ListOf(str)], [], "modules or .py files to import first"),
    "force": Field([Flag()], False, "recompute runs already recorded"),
    "launcher": Field([Options("none", "pytorch", "submitit")], "none",
                      "none, pytorch (under torchrun: DDP) or submitit (a job array of sweep workers)"),
    "workers": Field([Interval(int, 1, 1024)], 1, "worker processes of this sweep on this machine"),
    "claim_timeout": Field([Interval(float, 0, None, closed="neither")], 300.0,
                           "seconds without a heartbeat before another worker takes a run over"),
    "blas_threads": Field([Interval(int, 1, 4096), None], None, "BLAS threads of classic fits"),
    "custom_imports": Field([dict], None, "mmengine's plugin imports of a config file"),
    "train": Field([dict], None, "the train section"),
    "eval": Field([dict], None, "the eval section"),
    "classic": Field([dict], None, "the classic section"),
    "submit": Field([dict], None, "the submit section (launcher=submitit)"),
    "backbone": Field([dict], None, "the backbone section"),
    "dataset": Field([dict], None, "the dataset section"),
    "method": Field([dict], None, "a method block every method of the run starts from"),
})
