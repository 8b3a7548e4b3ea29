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
from hashbench.progress import Progress, SweepProgress, note
from hashbench.results import (CONVENTION_KEYS, DamagedCodes, ResultStore, check_out_folder, conventions_of,
                               data_of, eval_settings, latest, run_key)
from hashbench.settings import EVAL
from hashbench.tables import Stats, paired_replicates, render, scores_by_seed
from hashbench.uncertainty import LEVEL, RESAMPLES, SEED, interval, p_value, point, scheme


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


def score(q, d, ql, dl, ev: dict, metrics: list[str], label: str = "", *, store: ResultStore, run: tuple):
    """(metrics, eval info, seconds, per-query reference): the run ``run`` = (config hash, bits, seed)
    scored, its per-query scores written to ``store`` (what intervals and paired tests read)."""
    t1 = time.perf_counter()
    with Progress(f"{label} scoring".strip(), "queries") as lines:  # silent unless it takes a while
        scores, info = evaluate(q, d, ql, dl, metrics=metrics, ties=ev["ties"], ap_denominator=ev["ap_denominator"],
                                no_relevant=ev["no_relevant"], details=True, progress=lines.step)
    eval_info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    ref = store.save_scores(*run, info["per_query"], info["kept"])
    return {k: float(v) for k, v in scores.items()}, eval_info, time.perf_counter() - t1, ref


# the fields a re-scored record keeps from the record (or codes manifest) of the training run
RECORD_FIELDS = ("method", "dataset", "bits", "seed", "config_hash", "codes", "train_seconds", "device", "train_log",
                 "config", "data", "versions", "git_commit", "run_id")


def rescored(base: dict, ev: dict, metrics: list[str], scores: dict, info: dict, eval_s: float, run_id: str,
             per_query: dict) -> dict:
    """A new record for saved codes scored again: ``base`` (a record or a codes manifest) with new
    metrics and evaluation settings."""
    rec = {k: base[k] for k in RECORD_FIELDS if k in base}
    settings = eval_settings({**ev, "metrics": metrics})
    rec["config"] = {**rec.get("config", {}), "eval": {**rec.get("config", {}).get("eval", {}), **ev}}
    rec.update(metrics=scores, eval=settings, eval_seconds=eval_s, eval_info=info, per_query=per_query,
               versions=versions(), git_commit=git_commit(), run_id=run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"),
               reevaluated_from=base.get("reevaluated_from") or base.get("run_id"))
    return rec


def per_query_of(store: ResultStore):
    """``(merged record, metric) -> per-query scores`` (``None`` for a record scored before they were
    kept), read from ``store`` once per file. Refuses scores whose mean is not the record's value: a
    table never resamples numbers other than the ones it shows."""
    cache: dict[str, dict] = {}

    def load(record: dict, metric: str):
        if "_per_query" in record:  # merged by results.latest
            ref = record["_per_query"].get(metric)
        else:  # a record as written
            ref = record.get("per_query") if isinstance(record.get("per_query"), dict) else None
        if ref is None:
            return None
        source = ResultStore(ref["store"]) if "store" in ref else store  # several stores: the record's own
        key = str(source.out / str(ref.get("file")))
        if key not in cache:
            cache[key] = source.load_scores(ref)
        values = cache[key].get(metric)
        stated = record["metrics"][metric]
        if values is None or not len(values) or not np.isclose(values.mean(), stated, rtol=1e-9, atol=1e-12):
            raise DamagedCodes(f"{key} does not hold the {metric} scores of {record['method']} "
                               f"{record['bits']} bits seed {record['seed']} (mean {stated!r} recorded): refused")
        return values

    return load


def stats_of(store: ResultStore, words: dict | None = None) -> Stats:
    words = words or {}
    return Stats(per_query_of(store), ci=bool(words.get("ci")), resamples=words.get("resamples") or RESAMPLES,
                 seed=SEED if words.get("bootstrap_seed") is None else words["bootstrap_seed"])


def compare(words: dict) -> str:
    """``hashbench compare``: A minus B on one metric, per dataset and code length, with a paired
    two-stage bootstrap interval and p-value over the seeds both have and the same queries."""
    from hashbench.errors import suggest
    from hashbench.tables import label_variants, sections

    names = words.get("methods") or []
    if len(names) != 2 or names[0] == names[1]:
        raise HashbenchError(f"compare needs two different methods, methods=A,B; got {','.join(names) or 'none'}")
    metric = words.get("metric") or "map"
    parse_metric(metric)
    store, records = load_results(words.get("out", "out"))
    merged = select(latest(records), {k: v for k, v in words.items() if k in ("methods", "dataset", "bits", "seeds")})
    if not any(metric in r["metrics"] for r in merged):
        stored = list(dict.fromkeys(m for r in merged for m in r["metrics"]))
        raise HashbenchError(f"no stored result of {' or '.join(names)} has metric {metric!r}; stored: "
                             f"{', '.join(suggest(metric, stored))} (hashbench eval out=DIR metrics=... adds metrics)")
    stats = stats_of(store, words)
    a, b = names
    lines = []
    for dataset, conv, recs in sections(merged):
        label_variants(recs)
        for name in names:
            rows = {r["_row"] for r in recs if r["method"] == name}
            if len(rows) > 1:
                raise HashbenchError(f"{name} has runs under {len(rows)} configs in {dataset} ({', '.join(sorted(rows))}); "
                                     "compare one: keep its runs alone in an out= folder")
        lines.append(f"{dataset}: {a} minus {b}, {metric} (ties={conv[0]}, ap_denominator={conv[1]}, "
                     f"no_relevant={conv[2]})")
        table_rows = []
        for bits in sorted({r["bits"] for r in recs}):
            by = {}
            for name in names:
                rs = [r for r in recs if r["method"] == name and r["bits"] == bits and metric in r["metrics"]]
                by[name] = {int(r["seed"]): r for r in rs}
            common = tuple(sorted(set(by[a]) & set(by[b])))
            if not common:
                continue
            if data_of(by[a][common[0]]) != data_of(by[b][common[0]]):
                raise HashbenchError(f"{a} and {b} at {bits} bits were scored on different data; they cannot be paired")
            scores = {n: scores_by_seed([by[n][s] for s in common], metric, stats, required=True) for n in names}
            reps = paired_replicates(scores, names, common, stats, dataset, metric, bits)
            diff = reps[:, 0] - reps[:, 1]
            lo, hi = interval(diff[:, None])
            pa, pb = (float(point([scores[n][s] for s in common])) for n in names)
            table_rows.append([bits, f"{pa:.4f}", f"{pb:.4f}", f"{pa - pb:+.4f}", f"[{lo[0]:+.4f}, {hi[0]:+.4f}]",
                               f"{float(p_value(diff)):.4f}", len(common), len(scores[a][common[0]])])
        if not table_rows:
            lines.append(f"  no code length has runs of both {a} and {b} with a common seed")
            continue
        from tabulate import tabulate

        lines.append(tabulate(table_rows, headers=["bits", a, b, "difference", f"{LEVEL:.0%} interval", "p", "seeds",
                                                   "queries"], tablefmt="simple", disable_numparse=True))
    lines.append(f"Paired over the same seeds and queries: {scheme(stats.resamples, stats.seed)}; p: two-sided, the "
                 "share of difference replicates on the far side of 0, doubled (not corrected for several code "
                 "lengths).")
    return "\n".join(lines) + "\n"


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


def load_results(out: str | Path | list, *, writes: bool = False) -> tuple[ResultStore, list[dict]]:
    """The store of ``out`` and its records; an error naming the folder when there are none (or,
    for a command that ``writes`` there, when it cannot be written).

    ``out`` may be a list of folders (``hashbench table out=a,b``): their records are read as one
    store's (the first folder is the store returned), each record's per-query scores still read
    from its own folder."""
    if isinstance(out, (list, tuple)):
        store, records = load_results(out[0])
        records = [_from_store(r, store) for r in records]
        for folder in out[1:]:
            other, more = load_results(folder)
            records += [_from_store(r, other) for r in more]
        return store, records
    if writes:
        check_out_folder(out)
    elif Path(out).is_file():
        raise HashbenchError(f"out={out} is a file, not a folder of results; choose the folder a run wrote")
    store = ResultStore(out)
    records = store.records()
    if not records:
        raise HashbenchError(f"no results in {store.path}; run e.g. `hashbench run out={out}` first")
    return store, records


def _from_store(record: dict, store: ResultStore) -> dict:
    """``record`` read from ``store`` as one of several: its per-query scores reference points into
    ``store``, and ``_out`` names the folder its saved codes are in (:func:`store_of`)."""
    where = str(store.out)
    record = {**record, "_out": where}
    if isinstance(record.get("per_query"), dict):
        record["per_query"] = {**record["per_query"], "store": where}
    if isinstance(record.get("_per_query"), dict):  # a merged record (results.latest): one reference per metric
        record["_per_query"] = {m: {**ref, "store": where} if isinstance(ref, dict) else ref
                                for m, ref in record["_per_query"].items()}
    return record


def store_of(record: dict, default: ResultStore) -> ResultStore:
    """The store holding a record's saved codes: its own folder when read from several."""
    out = record.get("_out")
    return default if out is None or Path(out) == default.out else ResultStore(out)


def table(words: dict) -> str:
    """``hashbench table``: the report of every stored run (latest per run and conventions), of one
    ``out=`` folder or of several (``out=a,b``) read as one."""
    store, records = load_results(words.get("out", "out"))
    merged = select(latest(records), words)
    if "metrics" in words:
        from hashbench.tables import check_metrics

        check_metrics(merged, words["metrics"])
    return render(merged, words.get("metrics"), fmt=words.get("format", "markdown"), stats=stats_of(store, words))


def evaluate_stored(words: dict, stream=None) -> list[dict]:
    """``hashbench eval``: score saved codes again (other metrics or conventions) without training.

    For every selected run (latest record per run key) with saved codes, computes the requested
    metrics (default: the run's own ``eval.metrics``) under its conventions overridden by
    ``eval.*`` words, appends one record per run that needed anything new (``force=true``:
    recompute all), and prints the tables of the selected runs under these settings.
    """
    from contextlib import ExitStack

    given = words.get("out", "out")
    folders = list(dict.fromkeys(given)) if isinstance(given, (list, tuple)) else [given]
    stores = [load_results(f, writes=True)[0] for f in folders]  # a folder without results fails first
    say = lambda text: note(text, stream or sys.stdout)  # noqa: E731
    evaluated, listed, refused = [], [], []
    with ExitStack() as held:
        for store in stores:
            held.enter_context(store.lock())
        for folder in folders:  # each store's codes re-scored into its own results.jsonl
            done, shown_recs, left = _evaluate_stored({**words, "out": folder}, stream)
            evaluated += done
            listed += shown_recs
            refused += left
    if listed:
        overrides = {k.split(".", 1)[1]: v for k, v in words.items() if k.startswith("eval.")}
        metrics = overrides.get("tables") or words.get("metrics")
        say("\n" + render(listed, metrics, stats=stats_of(stores[0])))
    if refused:
        raise HashbenchError(f"{len(refused)} stored run{'s' if len(refused) > 1 else ''} left out, saved codes "
                             f"refused (the others are scored and recorded): {refused[0]}"
                             + (" …" if len(refused) > 1 else ""))
    return evaluated


def _codes_on_other_data(store: ResultStore, record: dict) -> bool:
    """Whether a run's saved codes were made on other data than its record says: codes saved by
    a later training (the data had changed) whose record was never written (killed while scoring)."""
    try:
        manifest = store.load_manifest(record["config_hash"], record["bits"], record["seed"])
    except DamagedCodes:
        return False  # refused, by name, when the codes are loaded
    return data_of(manifest) not in (None, data_of(record))


def _evaluate_stored(words: dict, stream=None) -> tuple[list, list, list]:
    """One folder's re-scoring: the records appended, the records to show, the runs refused."""
    store, records = load_results(words.get("out", "out"))
    say = lambda text: note(text, stream or sys.stdout)  # noqa: E731
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
        scores, info, eval_s, ref = score(codes["query"], codes["database"], codes["query_labels"],
                                           codes["database_labels"], ev, missing, label, store=store,
                                           run=(base["config_hash"], base["bits"], base["seed"]))
        if newer:  # the new record describes those codes, not the older record
            manifest = store.load_manifest(base["config_hash"], base["bits"], base["seed"])
            base = {**{k: v for k, v in base.items() if k != "reevaluated_from"},
                    **{k: v for k, v in manifest.items() if k in RECORD_FIELDS}}
        rec = rescored(base, ev, missing, scores, info, eval_s, run_id, ref)
        store.append(rec)
        shown_keys.append(key + tuple(str(ev[k]) for k in CONVENTION_KEYS))
        progress.finish((base["method"], "rescore"), time.perf_counter() - t)
        evaluated.append(rec)
        say(f"  {label} ({base['dataset']}): {shown(rec, missing)} (eval {eval_s:.2f}s)")
    progress.close()
    ties = sorted({str(e["ties"]) for _, _, e, _, _ in plan})
    say(f"hashbench eval {run_id}: scored {len(evaluated)} of {len(bases)} stored runs from {store.codes_dir} "
        f"without retraining (ties {', '.join(ties) or '-'}); {len(plan) - len(evaluated) - len(refused)} already had "
        f"every metric asked for{' (force=true recomputes)' if not words.get('force') else ''}"
        + (f"; {len(no_codes)} have no saved codes (older runs?) and were left out: "
           + ", ".join(f"{b['method']} {b['bits']} bits seed {b['seed']}" for b in no_codes[:5])
           + (" …" if len(no_codes) > 5 else "") if no_codes else ""))
    merged = {run_key(r) + conventions_of(r): r for r in latest(store.records())}
    return evaluated, [_from_store(merged[k], store) for k in shown_keys], refused
