"""``hashbench status``: where a sweep stands — done, running (by whom), stalled, failed, pending.

Read from the folder alone, so it works while workers run anywhere: the sweep's plan
(``out/sweeps/<run id>.json``, written by every worker and by ``launcher=submitit`` before it
submits), the records, and the claims and failure markers under ``out/claims/``.
"""
from __future__ import annotations

from pathlib import Path

from hashbench.claims import Claims
from hashbench.errors import HashbenchError
from hashbench.results import ResultStore, conventions_of, data_of, latest, run_key, stem

STATES = ("done", "running", "stalled", "failed", "pending")


def run_states(out: str | Path, plan: dict) -> list[tuple[str, dict, dict | None]]:
    """``(state, planned run, detail)`` for each run of ``plan``: the record when done, the claim
    when running or stalled (with why it is stalled), the failure when failed."""
    store, claims = ResultStore(out), Claims(out)
    records = store.records()
    if plan.get("force"):  # a force=true sweep is done with a run only once it recomputed it
        records = [r for r in records if r.get("run_id") == plan.get("run_id")]
    done = {run_key(r) + conventions_of(r): r for r in latest(records)}
    states = []
    for run in plan["runs"]:
        key = (run["method"], run["dataset"], int(run["bits"]), int(run["seed"]), run["config_hash"],
               *run.get("conventions", ()))
        name = stem(run["config_hash"], int(run["bits"]), int(run["seed"]))
        record = done.get(key)
        short = _short_of(record, run, plan.get("data")) if record is not None else None
        if record is not None and short is None:
            states.append(("done", run, record))
            continue
        claim = claims.read(name)
        if claim is not None:
            why = claims.stale(claim)
            states.append(("stalled", run, {**claim, "why": why}) if why else ("running", run, claim))
            continue
        failure = claims.failure(name)
        states.append(("failed", run, failure) if failure is not None else
                      ("pending", run, {"why": short} if short else None))
    return states


def _short_of(record: dict, run: dict, data: str | None) -> str | None:
    """Why a stored record of a planned run does not make it done, as the sweep decides it (a
    metric the plan asks for is missing: re-scored; made on other data: trained anew), or None."""
    if data and data_of(record) not in (None, data):
        return f"recorded on other data (run {record.get('run_id')}): the sweep trains it anew"
    missing = [m for m in run.get("metrics", ()) if m not in (record.get("metrics") or {})]
    if missing:
        return f"recorded without {', '.join(missing)} (run {record.get('run_id')}): the sweep re-scores its codes"
    return None


def _line(state: str, run: dict, detail: dict | None) -> str:
    label = run.get("label") or f"{run['method']} {run['bits']} bits seed {run['seed']}"
    if state == "running":
        what = f"by {detail.get('owner')} (heartbeat {detail['age']:.0f} s ago, since {detail.get('since')})"
    elif state == "stalled":
        what = f"claimed by {detail.get('owner')}, {detail['why']}: the next worker to reach it takes it over"
    elif state == "failed":
        what = f"{detail.get('error')} (in {detail.get('owner')}, run {detail.get('run_id')}; the next command " \
               "retries it)"
    elif state == "done":
        first = next(iter((detail.get("metrics") or {}).items()), None)
        what = f"run {detail.get('run_id')}" + (f", {first[0]} {first[1]:.4f}" if first else "")
    else:
        what = detail["why"] if detail else ""
    return f"  {state:<8} {label:<32} {what}".rstrip()


def status(words: dict) -> str:
    """The text ``hashbench status`` prints."""
    out = Path(words.get("out", "out"))
    store = ResultStore(out)
    if not out.is_dir():
        raise HashbenchError(f"out={out} does not exist")
    plans = store.plans()
    if not plans:
        raise HashbenchError(f"out={out} holds no sweep plan (out/sweeps/): no sweep has run into it since sweeps "
                             "record their plans; hashbench table out=... shows its records")
    wanted = words.get("run")
    if wanted is not None:
        chosen = [p for p in plans if p.get("run_id") == wanted]
        if not chosen:
            raise HashbenchError(f"no sweep {wanted!r} in out={out}; sweeps: "
                                 f"{', '.join(str(p.get('run_id')) for p in plans[-5:])}")
        plan = chosen[0]
    else:
        plan = plans[-1]
    states = run_states(out, plan)
    counts = {s: sum(st == s for st, _, _ in states) for s in STATES}
    lines = [f"out={out}: sweep {plan.get('run_id')}{' (force=true)' if plan.get('force') else ''}, "
             f"{len(states)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])]
    show_done = bool(words.get("all"))
    lines += [_line(*s) for s in states if show_done or s[0] != "done"]
    if len(plans) > 1 and wanted is None:
        lines.append(f"({len(plans) - 1} earlier sweep{'s' if len(plans) > 2 else ''} in this folder: run=ID shows "
                     f"one; the latest earlier: {plans[-2].get('run_id')})")
    return "\n".join(lines) + "\n"


__all__ = ["STATES", "run_states", "status"]
