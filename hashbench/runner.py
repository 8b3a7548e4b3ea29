"""The benchmark loop: for each method × code length × seed, train or fit, encode, rank, score.

A sweep survives interruptions (see :mod:`hashbench.results` for the files):

- every finished run is appended to ``out/results.jsonl`` at once, as one atomic line carrying the
  hash of its resolved config, so an interruption loses only the run in progress;
- running the same sweep again skips what is done (and says so); ``force=true`` recomputes;
- a run's codes are saved (packed, with a manifest) before it is scored, so a new evaluation
  (other metrics, other tie policy) re-scores them instead of retraining: ``hashbench eval``;
- a deep run trains with ``checkpoint=out/checkpoints/<hash>-<bits>-<seed>.pt``, and so resumes
  from its last epoch; the checkpoint is deleted once recorded.

The tables are written at the end as ``out/tables-<run id>.md`` and ``.tex``, and printed; they
are exactly what ``hashbench table`` prints for the same records.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from hashbench.augment import augmented
from hashbench.claims import Claims
from hashbench.config import RunConfig
from hashbench.device import seed_everything
from hashbench.distributed import init_distributed
from hashbench.encode import encode_deep
from hashbench.errors import HashbenchError
from hashbench.feature_cache import cached_features, weights_fingerprint
from hashbench.method import ClassicHasher, DeepMethod, method_class
from hashbench.model import DeepHasher
from hashbench.progress import SweepProgress, note
from hashbench.registry import BACKBONES, DATASETS, METHODS, build, lookup
from hashbench.results import (CONVENTION_KEYS, DamagedCodes, ResultStore, code_config, config_diff, config_hash,
                               data_change, data_of, eval_settings, method_kind, stem)
from hashbench.settings import CLASSIC, TRAIN
from hashbench.stored import git_commit, new_run_id, rescored, score, shown, versions
from hashbench.tables import no_relevant_note, render
from hashbench.train import train_deep
from hashbench.train_log import open_log
from hashbench.workers import RUN_ID_ENV, WORKER_ENV


def _labels(split) -> np.ndarray:
    return np.asarray(split.labels)


def resolved_config(mcfg: dict) -> dict:
    """The sections of a method's config that a record (and a training log) keeps; the backbone's
    ``input_size`` as it resolved ([H, W], or ``"data"`` for the stored images) when not written."""
    from hashbench.backbones import input_geometry

    out = {k: mcfg[k] for k in ("method", "backbone", "train", "dataset", "classic", "eval") if k in mcfg}
    backbone = out.get("backbone")
    if isinstance(backbone, dict) and "type" in backbone and "input_size" not in backbone:
        size, _ = input_geometry(backbone)
        out["backbone"] = {**backbone, "input_size": list(size) if size else "data"}
    return out


@dataclass
class Job:
    """One (method, bits, seed) of a sweep with its resolved config and the hash of it."""

    name: str
    mcfg: dict
    bits: int
    seed: int
    chash: str
    dataset: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.bits} bits seed {self.seed}"

    @property
    def key(self) -> tuple:
        return (self.name, self.dataset, self.bits, self.seed, self.chash)

    @property
    def conventions(self) -> tuple:
        return tuple(str(self.mcfg["eval"][k]) for k in CONVENTION_KEYS)

    @property
    def deep(self) -> bool:
        return not method_kind(self.mcfg["method"])[0]


class Runner:
    """Runs a checked run config (see :func:`hashbench.config.build_run_config`)."""

    def __init__(self, run: RunConfig, stream=None):
        self.run_config, self.stream = run, stream
        self.cfg, self.dataset_name = run.cfg, run.dataset_name
        cfg = self.cfg
        # Under torchrun (launcher=pytorch) every process runs this loop: all train the deep
        # methods together (DDP); only the main process encodes, scores, writes and prints.
        self.world = init_distributed(cfg["launcher"], device=cfg["device"])
        self.device = self.world.device
        self.out = Path(cfg["out"])
        self.store = ResultStore(self.out)
        self.run_id = os.environ.get(RUN_ID_ENV) or new_run_id()  # a worker's: the command's that started it
        self._features: dict = {}
        self.dataset = None

    def say(self, text: str) -> None:
        if self.world.is_main:
            note(text, self.stream or sys.stdout)

    def _load_data(self) -> None:
        if self.dataset is None:
            self.dataset = build(DATASETS, self.cfg["dataset"])
            self.splits = {s: self.dataset.get(s) for s in ("train", "query", "database")}
            self.data = self.dataset.fingerprint(tuple(self.splits))
            selecting = [n for n, m in self.run_config.methods.items() if TRAIN.check(m.get("train"))["select"]]
            if selecting and "val" not in self.dataset.splits():
                raise HashbenchError(f"train.select ({selecting[0]}) chooses the epoch on the val split, and dataset "
                                     f"{self.dataset_name!r} has none; set dataset.n_val=N (the queries are never "
                                     "used for it)")
            self.val = self.dataset.get("val") if selecting else None  # not in self.splits: classic methods skip it

    def _network(self, model, train: dict):
        """``split -> codes`` of a trained network, with the evaluation geometry of ``train.augment``."""
        def encode(split):
            split = augmented(split, train["augment"], train=False, size=model.input_hw)
            return encode_deep(model, split, self.device, train["encode_batch_size"], train["precision"])

        return encode

    def _validation(self, method, mcfg: dict):
        """``validate(model)`` for ``train.select``: the val split's codes as queries against the
        training set's, scored by the chosen metric under the run's evaluation conventions."""
        from hashbench.metrics import evaluate

        train = TRAIN.check(mcfg["train"])
        metric, ev = train["select"], mcfg["eval"]
        vl, tl = _labels(self.val), _labels(self.splits["train"])

        def validate(model):
            network = self._network(model, train)
            v = method.encode("query", self.val, network)
            t = method.encode("database", self.splits["train"], network)
            return evaluate(v, t, vl, tl, metrics=[metric], ties=ev["ties"], ap_denominator=ev["ap_denominator"],
                            no_relevant=ev["no_relevant"])[metric]
        return validate

    def plan(self) -> list[Job]:
        """Every (method, bits, seed) of the sweep, in the order they run."""
        cfg = self.cfg
        method_cfgs = self.run_config.methods
        return [Job(name, mcfg, bits, seed, config_hash(mcfg), self.dataset_name)
                for name, mcfg in method_cfgs.items() for bits in dict.fromkeys(cfg["bits"])
                for seed in dict.fromkeys(cfg["seeds"])]

    def run(self) -> list[dict]:
        jobs = self.plan()
        # Several processes may run the same sweep into one out= (workers=N, a job array, or by
        # hand): each run is claimed before it is computed. Under torchrun the main process claims
        # for the group.
        self.claims = Claims(self.out, timeout=self.cfg["claim_timeout"], run_id=self.run_id).start() \
            if self.world.is_main else None
        try:
            return self._run(jobs)
        finally:
            if self.claims is not None:
                self.claims.close()

    def save_plan(self, jobs: list[Job]) -> None:
        """``out/sweeps/<run id>.json``: the runs this command set out to compute, with the metrics
        each must have and, once read, the data's fingerprint (hashbench status)."""
        data = getattr(self, "data", None)
        self.store.save_plan(self.run_id, [dict(method=j.name, dataset=j.dataset, bits=j.bits, seed=j.seed,
                                                config_hash=j.chash, conventions=list(j.conventions), label=j.label,
                                                metrics=list(j.mcfg["eval"]["metrics"])) for j in jobs],
                             force=bool(self.cfg["force"]), data=data["sha256"] if data else None)

    def _done(self, records: list[dict]) -> dict:
        """What counts as done: every stored record, or with ``force=true`` only those this command
        (its workers share its run id) wrote."""
        if self.cfg["force"]:
            records = [r for r in records if r.get("run_id") == self.run_id]
        return self.store.done(records)

    def _decide(self, job: Job, done: dict) -> tuple[str, str]:
        """What a job needs — ``skip``, ``rescore`` or ``train`` — and, when stored work is not
        reused because the data under it changed or its codes are damaged, why."""
        data = self.data["sha256"]
        prev = done.get(job.key + job.conventions)
        if prev is not None and set(job.mcfg["eval"]["metrics"]) <= set(prev["metrics"]):
            if data_of(prev) in (None, data):
                return "skip", ""
            return "train", f"data changed ({data_change(prev.get('data'), self.data)})"
        if self.cfg["force"] or not self.store.has_codes(job.chash, job.bits, job.seed):
            return "train", ""
        try:  # every process decides the same, before any trains: codes are verified now, not when used
            manifest = self.store.load_manifest(job.chash, job.bits, job.seed)
            self.store.load_codes(job.chash, job.bits, job.seed)
        except DamagedCodes as e:
            return "train", f"saved codes refused: {e}"
        if data_of(manifest) not in (None, data):
            return "train", f"data changed since its codes were saved ({data_change(manifest.get('data'), self.data)})"
        return "rescore", ""

    def _claim(self, job: Job) -> tuple[str, object]:
        """The main process's claim on a job: ``("mine", (what, why, taken over))``, ``("done",
        record)`` when another worker recorded it meanwhile, ``("busy", holder's claim)`` or
        ``("failed", failure)`` when it failed in another worker of this command."""
        name = stem(job.chash, job.bits, job.seed)
        failure = self.claims.failure(name)
        if failure is not None and failure.get("run_id") == self.run_id:
            return "failed", failure
        ok, holder, took_over = self.claims.acquire(name, job.label)
        if not ok:
            return "busy", holder
        done = self._done(self.store.records())  # as it is now, with the claim held
        what, why = self._decide(job, done)
        if what == "skip":
            self.claims.release(name)
            return "done", done[job.key + job.conventions]
        return "mine", (what, why, took_over)

    def _run(self, jobs: list[Job]) -> list[dict]:
        cfg = self.cfg
        stored = self.store.records()
        done = self._done(stored)
        # The data is read before deciding what is done: a record made on other data is not reused.
        self._load_data()
        todo, why = {}, {}
        for job in jobs:
            todo[job.key], why[job.key] = self._decide(job, done)
        self._check_code_lengths([j for j in jobs if todo[j.key] == "train"])
        counts = {s: sum(v == s for v in todo.values()) for s in ("skip", "rescore", "train")}
        self.out.mkdir(parents=True, exist_ok=True)
        results_path = self.store.path
        what = f"methods {', '.join(cfg['methods'])}, bits {cfg['bits']}, seeds {cfg['seeds']}"
        sizes = ", ".join(f"{k} {v['n']}" for k, v in self.data["splits"].items())
        self.say(f"hashbench run {self.run_id}: dataset {self.dataset_name} ({sizes}; data "
                 f"{self.data['sha256'][:12]}), device {self.device}, {what}")
        if counts["skip"] or counts["rescore"]:
            parts = [f"{counts['skip']} of {len(jobs)} runs already done in {results_path}: skipped "
                     "(force=true recomputes)"]
            if counts["rescore"]:
                parts.append(f"{counts['rescore']} to re-score from saved codes (no training)")
            parts.append(f"{counts['train']} to train")
            self.say("; ".join(parts))
        unknown = [j for j in jobs if todo[j.key] == "skip" and data_of(done[j.key + j.conventions]) is None]
        if unknown:
            self.say(f"  {len(unknown)} of the skipped runs were recorded before records carried their data's "
                     "fingerprint: reused as they are (force=true recomputes them on the current data)")
        reasons: dict[str, list[str]] = {}
        for job in jobs:
            if why[job.key]:
                reasons.setdefault(why[job.key], []).append(job.label)
        for reason, labels in reasons.items():
            self.say(f"  not reused, training anew: {', '.join(labels[:4])}{' …' if len(labels) > 4 else ''}: "
                     f"{reason}")
        if not cfg["force"]:
            for line in self._changed_settings([j for j in jobs if todo[j.key] == "train" and not why[j.key]],
                                               stored):
                self.say(line)
        if self.world.is_main:
            self.save_plan(jobs)
        self.world.barrier()  # every process planned from the same results.jsonl before any is written
        progress = SweepProgress(len(jobs), [(j.name, todo[j.key]) for j in jobs if todo[j.key] != "skip"],
                                 self.stream)
        records, waiting = [], []
        for i, job in enumerate(jobs, 1):
            if todo[job.key] == "skip":
                prev = done[job.key + job.conventions]
                records.append(prev)
                self.say(f"  {job.label}: done (run {prev.get('run_id')}), skipped: "
                         f"{shown(prev, job.mcfg['eval']['tables'])}")
                continue
            if not self._attempt(job, i, todo[job.key], progress, records):
                waiting.append((i, job))
        if waiting:
            self._wait(waiting, todo, progress, records)
        progress.close()
        if not self.world.is_main:
            return records
        if os.environ.get(WORKER_ENV):  # a worker of workers=N or a job array: the launcher prints the tables
            return records
        self.print_tables(jobs)
        return records

    def print_tables(self, jobs: list[Job]) -> None:
        """Write and print the tables of a sweep's runs, as the store holds them now."""
        merged = self.store.done()
        listed = [merged[j.key + j.conventions] for j in jobs if j.key + j.conventions in merged]
        missing = [j.label for j in jobs if j.key + j.conventions not in merged]
        if missing:
            self.say(f"{len(missing)} of {len(jobs)} runs have no record (failed; hashbench status out={self.out} "
                     f"says why): {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        if not listed:
            return
        from hashbench.stored import stats_of

        stats = stats_of(self.store)  # one bootstrap per column for both formats
        text = self.tables(listed, stats=stats)
        (self.out / f"tables-{self.run_id}.md").write_text(text)
        (self.out / f"tables-{self.run_id}.tex").write_text(self.tables(listed, fmt="latex", stats=stats))
        self.say("\n" + text)
        self.say(f"results appended to {self.store.path}; tables in {self.out / f'tables-{self.run_id}.md'} (.tex)")

    def _attempt(self, job: Job, i: int, planned: str, progress: SweepProgress, records: list) -> bool:
        """Claim and compute one job; ``False`` when another worker holds it (try again later)."""
        state, detail = self._claim(job) if self.world.is_main else (None, None)
        if self.world.distributed:  # every process follows the main process's claim
            state, detail = self.world.all_gather_object((state, detail if state == "mine" else None))[0]
        kind = (job.name, planned)
        if state == "busy":
            return False
        if state == "failed":
            progress.drop(kind)
            if self.world.is_main:
                self.say(f"  {job.label}: failed in another worker ({detail.get('owner')}): {detail.get('error')}")
            return True
        if state == "done":
            progress.drop(kind)
            if self.world.is_main:
                records.append(detail)
                self.say(f"  {job.label}: recorded by another worker (run {detail.get('run_id')}): "
                         f"{shown(detail, job.mcfg['eval']['tables'])}")
            return True
        what, _, took_over = detail
        if took_over:
            self.say(f"  {job.label}: taking over its claim ({took_over}); resuming from its checkpoint if any")
        name = stem(job.chash, job.bits, job.seed)
        try:
            record = self._compute(job, i, what, progress)
        except Exception as e:
            if self.claims is not None:
                self.claims.fail(name, job.label, f"{type(e).__name__}: {e}" if not isinstance(e, HashbenchError)
                                 else str(e))
                self.claims.release(name)
            raise
        except BaseException:  # interrupted: the checkpoint stays, the claim goes, the run is resumable
            if self.claims is not None:
                self.claims.release(name)
            raise
        if record is not None:
            records.append(record)
        return True

    def _wait(self, waiting: list, todo: dict, progress: SweepProgress, records: list) -> None:
        """Wait for the runs other workers hold: each ends recorded, or its claim goes stale and
        this worker takes it over."""
        labels = [j.label for _, j in waiting]
        self.say(f"  waiting for {len(waiting)} run{'s' if len(waiting) > 1 else ''} other workers hold: "
                 f"{', '.join(labels[:4])}{' …' if len(labels) > 4 else ''}")
        # Most of them are recorded by the time this worker reaches the end of the plan: look again
        # at once, then back off to a poll of at most 2 s (a tenth of the timeout when that is shorter).
        poll, most = 0.0, min(2.0, self.cfg["claim_timeout"] / 10)
        while waiting:
            time.sleep(poll)
            waiting = [(i, j) for i, j in waiting if not self._attempt(j, i, todo[j.key], progress, records)]
            poll = min(most, max(2 * poll, 0.05))

    def _compute(self, job: Job, i: int, what: str, progress: SweepProgress) -> dict | None:
        """Train (or fit) and score, or re-score saved codes; append the record (main process)."""
        t = time.perf_counter()
        if not self.world.is_main and not (what == "train" and job.deep):
            self.world.barrier()  # classic fits and re-scoring are the main process's alone
            return None
        if what == "rescore":
            progress.start(i, job.label, "re-scoring saved codes")
            record = self.rescore(job)
        else:
            if self.world.is_main:
                progress.start(i, job.label, "training" if job.deep else "fitting")
            record = self.run_one(job.name, job.mcfg, job.bits, job.seed)
        self.world.barrier()
        if not self.world.is_main:
            return None
        name = stem(job.chash, job.bits, job.seed)
        if not self.claims.holds(name):  # stalled past claim_timeout: another worker took the run over
            self.say(f"  {job.label}: its claim was taken over by another worker while computing; this result "
                     "is not recorded (the other worker's is)")
            return None
        self.store.append(record)  # one atomic line: earlier results are never overwritten
        self.store.checkpoint_path(job.chash, job.bits, job.seed).unlink(missing_ok=True)
        self.claims.clear_failure(name)
        self.claims.release(name)
        progress.finish((job.name, what), time.perf_counter() - t)
        tables = job.mcfg["eval"]["tables"]
        if what == "rescore":
            self.say(f"  {job.label}: {shown(record, tables)} (re-scored saved codes of run "
                     f"{record['reevaluated_from']}, eval {record['eval_seconds']:.2f}s)")
        else:
            self.say(f"  {job.label}: {shown(record, tables)} "
                     f"(train {record['train_seconds']:.1f}s, eval {record['eval_seconds']:.2f}s)")
        warning = no_relevant_note([record])
        if warning:
            self.say(f"  {job.label}: warning: {warning}")
        return record

    def _changed_settings(self, jobs: list[Job], records: list[dict]) -> list[str]:
        """One line per method whose runs to train have stored runs of the same method, dataset,
        code length and seed under other settings: what differs, and that those are not reused."""
        stored: dict[tuple, dict] = {}
        for rec in records:
            if isinstance(rec.get("config"), dict):
                stored[(rec["method"], rec["dataset"], int(rec["bits"]), int(rec["seed"]))] = rec
        lines, seen = [], {}
        for job in jobs:
            rec = stored.get((job.name, job.dataset, job.bits, job.seed))
            if rec is None or rec.get("config_hash") == job.chash:
                continue
            try:
                diff = config_diff(code_config(rec["config"]), code_config(job.mcfg))
            except HashbenchError:  # a stored method no longer registered: compare the blocks as written
                diff = config_diff({k: rec["config"].get(k) for k in ("method",)}, {"method": job.mcfg["method"]})
            seen.setdefault(job.name, [0, diff])[0] += 1
        for name, (n, diff) in seen.items():
            what = "; ".join(diff[:3]) + (" ..." if len(diff) > 3 else "") if diff else "code or record format"
            lines.append(f"  {name}: {n} stored run{'s' if n > 1 else ''} of the same code length and seed "
                         f"{'have' if n > 1 else 'has'} other settings ({what}); kept in results.jsonl, "
                         "not reused: training anew")
        return lines

    def tables(self, records: list[dict], fmt: str = "markdown", stats=None) -> str:
        from hashbench.stored import stats_of

        return render(records, self.cfg["eval"]["tables"], fmt=fmt, stats=stats or stats_of(self.store))

    # ------------------------------------------------------------------------------------------
    def run_one(self, name: str, mcfg: dict, bits: int, seed: int) -> dict:
        """Train or fit, encode, save the codes, score: the record of one run (not yet appended)."""
        self._load_data()
        chash = config_hash(mcfg)
        seed_everything(seed)
        method = build(METHODS, mcfg["method"], n_bits=bits, random_state=seed)
        label = f"{name} {bits} bits seed {seed}"
        t0 = time.perf_counter()
        log, selection = [], None
        if isinstance(method, DeepMethod):
            if self.dataset.kind != "images":
                raise HashbenchError(f"{name} is a deep method and trains a backbone on images, but dataset "
                                     f"{self.dataset_name!r} holds precomputed features; use a classic "
                                     "method on it (hashbench list methods)")
            backbone = build(BACKBONES, mcfg["backbone"])
            model = DeepHasher.for_method(backbone, method)
            checkpoint = self.store.checkpoint_path(chash, bits, seed)  # resumes an interrupted run
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            train = TRAIN.check(mcfg["train"])
            log_to = open_log(train["log"], self.out, f"{name}_{bits}bits_seed{seed}_{chash[:8]}", resolved_config(mcfg)) \
                if self.world.is_main else None
            validate = self._validation(method, mcfg) if train["select"] else None
            try:
                log = train_deep(method, model, self.splits["train"], mcfg["train"], self.device, seed, label,
                                 checkpoint=str(checkpoint), world=self.world, log_to=log_to, validate=validate)
            finally:
                if log_to is not None:
                    log_to.close()
            train_s = time.perf_counter() - t0
            if not self.world.is_main:
                return None
            chosen = next((e for e in log if e.get("selected")), None)
            if chosen is not None:
                selection = dict(metric=train["select"], every=train["select_every"], epoch=chosen["epoch"],
                                 value=chosen["val"], split="val", data=self.dataset.fingerprint(("val",)))
            network = self._network(model, train)
            q, d = (method.encode(s, self.splits[s], network) for s in ("query", "database"))
        elif isinstance(method, ClassicHasher):
            feats = self.features(mcfg, seed) if method.needs_features else \
                {s: np.zeros((len(v), 1), np.float32) for s, v in self.splits.items()}
            # not part of the config hash: threads change speed, not the method
            threads = self.cfg["blas_threads"]
            with threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext():
                method.fit(feats["train"], _labels(self.splits["train"]))
                train_s = time.perf_counter() - t0
                q, d = method.encode(feats["query"]), method.encode(feats["database"])
        else:
            raise HashbenchError(f"method {name!r} builds a {type(method).__name__}, which is neither a "
                                 "DeepMethod nor a ClassicHasher")
        ql, dl = _labels(self.splits["query"]), _labels(self.splits["database"])
        resolved = resolved_config(mcfg)
        base = dict(method=name, dataset=self.dataset_name, bits=bits, seed=seed, config_hash=chash,
                    codes=f"codes/{stem(chash, bits, seed)}.npz", train_seconds=train_s, device=str(self.device),
                    train_log=log, config=resolved, data=self.data, versions=versions(), git_commit=git_commit(),
                    run_id=self.run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    **({"selection": selection} if selection else {}))
        self.store.save_codes(base, q, d, ql, dl)  # before scoring: an interrupted evaluation costs no training
        ev = mcfg["eval"]
        scores, info, eval_s, ref = score(q, d, ql, dl, ev, ev["metrics"], label, store=self.store,
                                          run=(chash, bits, seed))
        return dict(base, metrics=scores, eval=eval_settings(ev), eval_seconds=eval_s, eval_info=info, per_query=ref)

    def rescore(self, job: Job) -> dict:
        """The record of a run whose codes are saved, scored under the job's evaluation settings."""
        codes = self.store.load_codes(job.chash, job.bits, job.seed)
        manifest = self.store.load_manifest(job.chash, job.bits, job.seed)
        ev = job.mcfg["eval"]
        scores, info, eval_s, ref = score(codes["query"], codes["database"], codes["query_labels"],
                                          codes["database_labels"], ev, ev["metrics"], job.label, store=self.store,
                                          run=(job.chash, job.bits, job.seed))
        base = {**manifest, "method": job.name, "dataset": job.dataset}
        return rescored(base, {k: ev[k] for k in CONVENTION_KEYS}, list(ev["metrics"]), scores, info, eval_s,
                         self.run_id, ref)

    def _check_code_lengths(self, jobs: list[Job]) -> None:
        """Refuse, before any run is computed, a classic method with one bit per direction of its
        feature space (``bits_within_features``) at more bits than its features have — rather than
        stopping the sweep when that run's turn comes."""
        dims: dict[str, int] = {}
        for job in jobs:
            if not getattr(method_class(lookup(METHODS, job.mcfg["method"]["type"])), "bits_within_features", False):
                continue
            key = json.dumps([job.mcfg["classic"], job.mcfg["backbone"]], sort_keys=True, default=str)
            if key not in dims:
                dims[key] = self.feature_dim(job.mcfg)
            if job.bits > dims[key]:
                raise HashbenchError(f"{job.name} at {job.bits} bits: it gives one bit per direction of its "
                                     f"features, and they have {dims[key]} ({self.feature_source(job.mcfg)}); "
                                     f"use bits of at most {dims[key]} for it")

    def _hashes_inputs(self, mcfg: dict) -> bool:
        """Whether a classic method of ``mcfg`` is fitted on the data's own inputs (a features
        dataset, or ``classic.features=pixels``) rather than on a frozen backbone's features."""
        return self.dataset.kind == "features" or CLASSIC.check(mcfg["classic"])["features"] == "pixels"

    def feature_source(self, mcfg: dict) -> str:
        """What a classic method of ``mcfg`` is fitted on, in words."""
        if self.dataset.kind == "features":
            return f"dataset {self.dataset_name!r}"
        if self._hashes_inputs(mcfg):
            return "classic.features=pixels"
        return f"backbone {mcfg['backbone'].get('name')!r}, classic.features=backbone"

    def feature_dim(self, mcfg: dict) -> int:
        """The number of features a classic method of ``mcfg`` is fitted on, without extracting them."""
        if self._hashes_inputs(mcfg):
            return int(np.prod(np.shape(self.splits["train"][0][0])))
        return int(build(BACKBONES, {**mcfg["backbone"], "frozen": True}).dims[0])

    def features(self, mcfg: dict, seed: int) -> dict[str, np.ndarray]:
        """Features for classic methods: the dataset's own, or the frozen backbone's (once per run)."""
        if self._hashes_inputs(mcfg):
            # A features dataset's inputs are already float32 (often a memory map of the file):
            # handed over as they are, since a copy of a 193k x 2048 database is 1.6 GB. Pixels
            # become one float32 copy, scaled in place.
            out = {}
            for s, v in self.splits.items():
                x = v.all_inputs().reshape(len(v), -1)
                if self.dataset.kind == "features":
                    out[s] = x.astype(np.float32, copy=False)
                else:
                    out[s] = x.astype(np.float32)
                    out[s] *= 1 / 255
            return out
        key = (json.dumps(mcfg["backbone"], sort_keys=True), seed)
        if key not in self._features:
            # On disk under a content key (backbone, its actual weights, transform, data): every
            # method × bits of this and later sweeps reuses one extraction.
            seed_everything(seed)  # an untrained backbone's features depend on its initialisation
            backbone = build(BACKBONES, {**mcfg["backbone"], "frozen": True})
            data = json.dumps(dict(dataset=self.dataset_name, params=mcfg["dataset"]), sort_keys=True,
                              default=str)
            weights = weights_fingerprint(backbone)
            self._features[key] = {s: cached_features(mcfg["backbone"], v, split_key=f"{data}/{s}",
                                                      device=self.device, backbone=backbone, weights=weights)
                                   for s, v in self.splits.items()}
        return self._features[key]


__all__ = ["Job", "Runner"]
