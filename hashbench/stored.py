"""The commands over an ``out=`` folder's stored results: ``hashbench table`` and ``hashbench eval``
(re-scoring saved codes without training), and the scoring both they and the sweep use."""
from __future__ import annotations

import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch

import hashbench
from hashbench.errors import HashbenchError
from hashbench.metrics import conventions, evaluate, parse_metric
from hashbench.progress import Progress, SweepProgress
from hashbench.results import (CONVENTION_KEYS, DamagedCodes, ResultStore, check_out_folder, conventions_of,
                               data_of, eval_settings, latest, run_key)
from hashbench.settings import EVAL
from hashbench.tables import render


def versions() -> dict[str, str]:
    import mmengine
    import timm

    return dict(hashbench=hashbench.__version__, python=platform.python_version(), torch=torch.__version__,
                timm=timm.__version__, mmengine=mmengine.__version__, numpy=np.__version__)


def git_commit() -> str | None:
    try:
        root = Path(hashbench.__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{uuid.uuid4().hex[:6]}"  # unique: tables are never overwritten


def shown(record: dict, metrics: list[str]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if k in metrics)


def score(q, d, ql, dl, ev: dict, metrics: list[str], label: str = ""):
    t1 = time.perf_counter()
    lines = Progress(f"{label} scoring".strip())  # silent unless the evaluation takes a while
    scores, info = evaluate(q, d, ql, dl, metrics=metrics, ties=ev["ties"], ap_denominator=ev["ap_denominator"],
                            no_relevant=ev["no_relevant"], details=True,
                            progress=lambda done, total: lines.step(done, total, "queries"))
    eval_info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    return {k: float(v) for k, v in scores.items()}, eval_info, time.perf_counter() - t1


# the fields a re-scored record keeps from the record (or codes manifest) of the training run
RECORD_FIELDS = ("method", "dataset", "bits", "seed", "config_hash", "codes", "train_seconds", "device", "train_log",
                 "config", "data", "versions", "git_commit", "run_id")


def rescored(base: dict, ev: dict, metrics: list[str], scores: dict, info: dict, eval_s: float, run_id: str) -> dict:
    """A new record for saved codes scored again: ``base`` (a record or a codes manifest) with new
    metrics and evaluation settings."""
    rec = {k: base[k] for k in RECORD_FIELDS if k in base}
    settings = eval_settings({**ev, "metrics": metrics})
    rec["config"] = {**rec.get("config", {}), "eval": {**rec.get("config", {}).get("eval", {}), **ev}}
    rec.update(metrics=scores, eval=settings, eval_seconds=eval_s, eval_info=info, versions=versions(),
               git_commit=git_commit(), run_id=run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"),
               reevaluated_from=base.get("reevaluated_from") or base.get("run_id"))
    return rec


def select(records: list[dict], words: dict) -> list[dict]:
    """Records passing the filters ``methods``, ``dataset``, ``bits``, ``seeds`` of ``words``;
    a filter value that matches nothing stored is refused, naming what is stored."""
    from hashbench.errors import suggest

    fields = dict(methods="method", dataset="dataset", bits="bits", seeds="seed")
    for word, field in fields.items():
        if word not in words:
            continue
        wanted = words[word] if isinstance(words[word], list) else [words[word]]
        stored = list(dict.fromkeys(r[field] for r in records))
        for w in wanted:
            if w not in stored:
                names = ([str(s) for s in sorted(stored)] if field in ("bits", "seed")
                         else suggest(str(w), [str(s) for s in stored]))
                raise HashbenchError(f"no stored result has {field} {w!r}; stored: {', '.join(names)}")
        records = [r for r in records if r[field] in wanted]
    return records


def load_results(out: str | Path, *, writes: bool = False) -> tuple[ResultStore, list[dict]]:
    """The store of ``out`` and its records; an error naming the folder when there are none (or,
    for a command that ``writes`` there, when it cannot be written)."""
    if writes:
        check_out_folder(out)
    elif Path(out).is_file():
        raise HashbenchError(f"out={out} is a file, not a folder of results; choose the folder a run wrote")
    store = ResultStore(out)
    records = store.records()
    if not records:
        raise HashbenchError(f"no results in {store.path}; run e.g. `hashbench run out={out}` first")
    return store, records


def table(words: dict) -> str:
    """``hashbench table``: the report of every stored run (latest per run and conventions)."""
    _, records = load_results(words.get("out", "out"))
    merged = select(latest(records), words)
    if "metrics" in words:
        from hashbench.tables import check_metrics

        check_metrics(merged, words["metrics"])
    return render(merged, words.get("metrics"), fmt=words.get("format", "markdown"))


def evaluate_stored(words: dict, stream=None) -> list[dict]:
    """``hashbench eval``: score saved codes again (other metrics or conventions) without training.

    For every selected run (latest record per run key) with saved codes, computes the requested
    metrics (default: the run's own ``eval.metrics``) under its conventions overridden by
    ``eval.*`` words, appends one record per run that needed anything new (``force=true``:
    recompute all), and prints the tables of the selected runs under these settings.
    """
    store, _ = load_results(words.get("out", "out"), writes=True)  # a folder without results fails first
    with store.lock():
        return _evaluate_stored(words, stream)


def _codes_on_other_data(store: ResultStore, record: dict) -> bool:
    """Whether a run's saved codes were made on other data than its record says: codes saved by
    a later training (the data had changed) whose record was never written (killed while scoring)."""
    try:
        manifest = store.load_manifest(record["config_hash"], record["bits"], record["seed"])
    except DamagedCodes:
        return False  # refused, by name, when the codes are loaded
    return data_of(manifest) not in (None, data_of(record))


def _evaluate_stored(words: dict, stream=None) -> list[dict]:
    store, records = load_results(words.get("out", "out"))
    say = lambda text: print(text, file=stream or sys.stdout, flush=True)  # noqa: E731
    overrides = EVAL.check({k.split(".", 1)[1]: v for k, v in words.items() if k.startswith("eval.")}, fill=False)
    if "metrics" in words:
        overrides["metrics"] = words["metrics"]
    for m in overrides.get("metrics", []):
        parse_metric(m)
    conventions(**{k: overrides[k] for k in CONVENTION_KEYS if k in overrides})  # one-line errors for bad values
    # one base record per run key: the latest, whatever its conventions
    bases: dict[tuple, dict] = {}
    for r in select(latest(records), words):
        bases[run_key(r)] = r
    merged = {run_key(r) + conventions_of(r): r for r in latest(records)}
    run_id = new_run_id()
    plan, no_codes = [], []
    for key, base in bases.items():
        ev = {**dict(zip(CONVENTION_KEYS, conventions_of(base))),
              **{k: overrides[k] for k in CONVENTION_KEYS if k in overrides}}
        metrics = list(overrides.get("metrics") or (base.get("eval") or {}).get("metrics")
                       or ((base.get("config") or {}).get("eval") or {}).get("metrics") or base["metrics"])
        have = merged.get(key + tuple(str(ev[k]) for k in CONVENTION_KEYS), {}).get("metrics", {})
        chash = base.get("config_hash")
        saved = bool(chash) and store.has_codes(chash, base["bits"], base["seed"])
        newer = saved and _codes_on_other_data(store, base)
        if newer:
            have = {}  # the stored metrics describe older codes: every metric asked for is new
        missing = metrics if words.get("force") else [m for m in metrics if m not in have]
        if missing and not saved:
            no_codes.append(base)
            continue
        plan.append((key, base, ev, missing, newer))
    progress = SweepProgress(len(plan), [(b["method"], "rescore") for _, b, _, m, _ in plan if m], stream)
    evaluated, shown_keys, refused = [], [], []
    for i, (key, base, ev, missing, newer) in enumerate(plan, 1):
        if not missing:
            shown_keys.append(key + tuple(str(ev[k]) for k in CONVENTION_KEYS))
            continue
        label = f"{base['method']} {base['bits']} bits seed {base['seed']}"
        progress.start(i, label, "scoring saved codes")
        t = time.perf_counter()
        try:
            codes = store.load_codes(base["config_hash"], base["bits"], base["seed"])
        except DamagedCodes as e:  # the others are still scored and recorded
            refused.append(f"{label}: {e}")
            say(f"  {label} ({base['dataset']}): refused: {e}")
            continue
        scores, info, eval_s = score(codes["query"], codes["database"], codes["query_labels"],
                                      codes["database_labels"], ev, missing, label)
        if newer:  # the new record describes those codes, not the older record
            manifest = store.load_manifest(base["config_hash"], base["bits"], base["seed"])
            base = {**{k: v for k, v in base.items() if k != "reevaluated_from"},
                    **{k: v for k, v in manifest.items() if k in RECORD_FIELDS}}
        rec = rescored(base, ev, missing, scores, info, eval_s, run_id)
        store.append(rec)
        shown_keys.append(key + tuple(str(ev[k]) for k in CONVENTION_KEYS))
        progress.finish((base["method"], "rescore"), time.perf_counter() - t)
        evaluated.append(rec)
        say(f"  {label} ({base['dataset']}): {shown(rec, missing)} (eval {eval_s:.2f}s)")
    ties = sorted({str(e["ties"]) for _, _, e, _, _ in plan})
    say(f"hashbench eval {run_id}: scored {len(evaluated)} of {len(bases)} stored runs from {store.codes_dir} "
        f"without retraining (ties {', '.join(ties) or '-'}); {len(plan) - len(evaluated) - len(refused)} already had "
        f"every metric asked for{' (force=true recomputes)' if not words.get('force') else ''}"
        + (f"; {len(no_codes)} have no saved codes (older runs?) and were left out: "
           + ", ".join(f"{b['method']} {b['bits']} bits seed {b['seed']}" for b in no_codes[:5])
           + (" …" if len(no_codes) > 5 else "") if no_codes else ""))
    if shown_keys:
        merged = {run_key(r) + conventions_of(r): r for r in latest(store.records())}
        recs = [merged[k] for k in shown_keys]
        metrics = overrides.get("tables") or overrides.get("metrics")
        say("\n" + render(recs, metrics))
    if refused:
        raise HashbenchError(f"{len(refused)} stored run{'s' if len(refused) > 1 else ''} left out, saved codes "
                             f"refused (the others are scored and recorded): {refused[0]}"
                             + (" …" if len(refused) > 1 else ""))
    return evaluated
