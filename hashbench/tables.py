"""Paper-style tables: one per metric, methods × code lengths, mean ± std over seeds.

:func:`render` turns result records (see :mod:`hashbench.results`) into the full report: one
section per dataset (and per set of evaluation conventions, if the records mix them), one table
per metric and a footer stating the conventions and seeds. Bold marks the best mean of each column
and, where the runs' per-query scores are stored, every method not significantly worse than it
(:func:`column_stats`: paired two-stage bootstrap, Holm-corrected over the column); ``ci=True``
shows each cell's bootstrap interval, ``mean [lo, hi]``, instead of ``mean ± std``.
``hashbench run`` prints it for the records of its sweep; ``hashbench table`` for a whole ``out=``
folder. Formats: ``markdown`` (GitHub tables), ``latex`` (``tabular`` fragments), ``csv`` (one
tidy row per dataset × method × bits × metric, unrounded), ``html`` (``<table>`` fragments, what
``hashbench report`` embeds).
"""
from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict

import numpy as np
from tabulate import tabulate

from hashbench import uncertainty
from hashbench.errors import HashbenchError, suggest
from hashbench.results import data_of, flat

FORMATS = {"markdown": "github", "latex": "latex_raw", "plain": "simple", "html": "unsafehtml"}
TABLE_FORMATS = ("markdown", "latex", "csv", "html")
DEFAULT_TABLES = ["map", "wmap@5000", "ndcg@100", "acg@100"]
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "×": r"$\times$", "±": r"$\pm$", "≥": r"$\geq$", "†": r"\dag{}"}


def latex_escape(text: str) -> str:
    """Plain text → LaTeX text mode (special characters escaped, ``>=`` as ≥)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text).replace(">=", r"$\geq$")


def row_label(record: dict) -> str:
    """A record's table row: its method, or ``method [hash8]`` when set by :func:`label_variants`."""
    return record.get("_row", record["method"])


def aggregate(records: list[dict], metric: str) -> dict[tuple[str, int], list[float]]:
    """(row, bits) → the metric's values over seeds."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in records:
        if metric in r["metrics"]:
            cells[(row_label(r), r["bits"])].append(r["metrics"][metric])
    return cells


def _best(cells: dict, bits: list[int]) -> dict[int, float | None]:
    return {b: max((np.mean(v) for (m, bb), v in cells.items() if bb == b), default=None) for b in bits}


def mixed_cells(records: list[dict], metric: str) -> set[tuple[str, int]]:
    """(row, bits) cells whose values come from runs made on different data (fingerprints)."""
    seen: dict[tuple[str, int], set] = defaultdict(set)
    for r in records:
        if metric in r["metrics"] and data_of(r) is not None:
            seen[(row_label(r), r["bits"])].add(data_of(r))
    return {k for k, v in seen.items() if len(v) > 1}


def data_note(records: list[dict]) -> str:
    """``""`` when every run of a section was made on the same data; otherwise which data each
    was made on, and that ``†`` marks a mean over different data."""
    versions: dict[str, list[str]] = {}
    sizes: dict[str, str] = {}
    for r in records:
        d = data_of(r)
        if d is None:
            continue
        versions.setdefault(d, [])
        who = f"{row_label(r)} {r['bits']} bits seed {r['seed']}"
        if who not in versions[d]:
            versions[d].append(who)
        sizes[d] = ", ".join(f"{s} {v.get('n')}" for s, v in (r["data"].get("splits") or {}).items())
    if len(versions) < 2:
        return ""
    parts = [f"data {d[:12]} ({sizes[d]}): {', '.join(w[:6])}{' …' if len(w) > 6 else ''}"
             for d, w in versions.items()]
    return (f"These runs were made on {len(versions)} different versions of the data — " + "; ".join(parts)
            + "; † marks a mean over runs on different data")


def no_relevant_note(records: list[dict]) -> str:
    """``""``, or how many queries have no relevant item in the database and what that does to the
    metrics (from the records' ``eval_info``)."""
    counts = {}
    for r in records:
        info = r.get("eval_info") or {}
        k, n = info.get("queries_without_relevant"), info.get("n_queries")
        if isinstance(k, int) and k > 0:
            counts[(k, n, str(info.get("no_relevant", "zero")))] = None
    if not counts:
        return ""
    parts = []
    for k, n, policy in counts:
        effect = ("count as 0 in every metric (eval.no_relevant=skip leaves them out)" if policy == "zero"
                  else "are left out of every mean (eval.no_relevant=skip)")
        parts.append(f"{k} of {n} queries have no relevant item in the database: they {effect}")
    return "; ".join(parts)


class Stats:
    """Bootstrap settings of a report and what its columns found: per (metric, bits) the bold rows
    (``None``: no per-query scores, best mean only) and per (metric, row, bits) an interval.
    A column is computed once however many formats print it."""

    def __init__(self, per_query, ci: bool = False, resamples: int = uncertainty.RESAMPLES,
                 seed: int = uncertainty.SEED):
        self.per_query, self.ci, self.resamples, self.seed = per_query, ci, resamples, seed
        self.fallback: set[tuple[str, int]] = set()
        self._columns: dict[tuple, tuple] = {}

    def column(self, records: list[dict], metric: str, bits: int) -> tuple[set | None, dict]:
        from hashbench.results import conventions_of

        key = (metric, bits, tuple((row_label(r), r["dataset"], r["seed"], r.get("config_hash"), conventions_of(r),
                                    r["metrics"][metric]) for r in records
                                   if r["bits"] == bits and metric in r["metrics"]))
        if key not in self._columns:
            self._columns[key] = column_stats(records, metric, bits, self)
        return self._columns[key]


def missing_scores(label: str, bits: int, seed: int, metric: str) -> HashbenchError:
    return HashbenchError(f"no per-query scores stored for {label} {bits} bits seed {seed} ({metric}; a run scored "
                          "before hashbench kept them): `hashbench eval out=DIR force=true` scores its saved codes "
                          "again and keeps them")


def scores_by_seed(records: list[dict], metric: str, stats: Stats, required: bool) -> dict[int, np.ndarray] | None:
    """seed -> per-query scores of one row's runs; ``None`` when a run has none stored (an error
    when ``required``)."""
    out = {}
    for r in records:
        values = stats.per_query(r, metric)
        if values is None:
            if required:
                raise missing_scores(row_label(r), r["bits"], r["seed"], metric)
            return None
        out[int(r["seed"])] = values
    return out


def paired_replicates(by_row: dict[str, dict[int, np.ndarray]], names: list[str], seeds: tuple, stats: Stats,
                      dataset: str, metric: str, bits: int) -> np.ndarray:
    """(resamples, len(names)) replicate means of ``names`` on ``seeds``, the same draws for every
    name (what pairs them); the generator is the cell's, so any subset of names gets the same draws."""
    for s in seeds:
        if len({len(by_row[n][s]) for n in names}) > 1:
            raise HashbenchError(f"{metric} at {bits} bits seed {s}: {', '.join(names)} were scored on different "
                                 "numbers of queries; they cannot be paired")
    x = [np.stack([by_row[n][s] for n in names], axis=1) for s in seeds]
    return uncertainty.replicates(x, stats.resamples, uncertainty.rng_for(stats.seed, dataset, metric, bits, seeds))


def column_stats(records: list[dict], metric: str, bits: int, stats: Stats) -> tuple[set | None, dict]:
    """(bold rows, row -> (lo, hi)) of one column from the runs' per-query scores.

    Bold: the best mean and every row whose paired test against it (the two rows' replicates on
    the seeds both have, the same draws for both) is not rejected by Holm's procedure over the
    column at :data:`hashbench.uncertainty.ALPHA`; ``None`` when a run of the column has no stored
    per-query scores or the column mixes data (queries cannot be paired).
    """
    recs = [r for r in records if r["bits"] == bits and metric in r["metrics"]]
    rows = list(dict.fromkeys(row_label(r) for r in recs))
    by_row = {row: scores_by_seed([r for r in recs if row_label(r) == row], metric, stats, required=stats.ci)
              for row in rows}
    if any(v is None for v in by_row.values()) or len({data_of(r) for r in recs}) > 1:
        stats.fallback.add((metric, bits))
        return None, {}
    dataset = recs[0]["dataset"]
    groups: dict[tuple, list[str]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(by_row[row]))].append(row)
    replicate_of: dict[str, np.ndarray] = {}
    for seeds, names in groups.items():
        r = paired_replicates(by_row, names, seeds, stats, dataset, metric, bits)
        replicate_of.update({n: r[:, i] for i, n in enumerate(names)})
    intervals = {}
    for row in rows:
        lo, hi = uncertainty.interval(replicate_of[row][:, None])
        intervals[row] = (float(lo[0]), float(hi[0]))
    means = {row: float(np.mean([r["metrics"][metric] for r in recs if row_label(r) == row])) for row in rows}
    best = max(rows, key=lambda row: means[row])
    others, pvalues = [], []
    for row in rows:
        if row == best:
            continue
        common = tuple(sorted(set(by_row[row]) & set(by_row[best])))
        if not common:
            continue  # nothing to pair: not shown as tied with the best
        if set(by_row[row]) == set(by_row[best]):
            diff = replicate_of[best] - replicate_of[row]
        else:
            r = paired_replicates(by_row, [best, row], common, stats, dataset, metric, bits)
            diff = r[:, 0] - r[:, 1]
        others.append(row)
        pvalues.append(float(uncertainty.p_value(diff)))
    rejected = uncertainty.holm(pvalues)
    return {best} | {row for row, rej in zip(others, rejected) if not rej}, intervals


def bold_rule(stats: Stats | None, metrics: list[str]) -> str:
    """The footer sentence saying what bold means (and the interval scheme when shown)."""
    if stats is None:
        return "Bold: the best mean of each column"
    text = (f"Bold: the best mean of each column and every method not significantly worse than it (paired "
            f"two-stage bootstrap test, two-sided, Holm-corrected over the column at {uncertainty.ALPHA}; "
            f"{stats.resamples} resamples, bootstrap seed {stats.seed})")
    fell = sorted({f"{m} {b} bits" for m, b in stats.fallback if m in metrics})
    if fell:
        text += (f"; best mean only where per-query scores are missing or the data differ ({', '.join(fell[:4])}"
                 + (" …" if len(fell) > 4 else "") + "; `hashbench eval out=DIR force=true` stores them)")
    if stats.ci:
        text += ". " + uncertainty.scheme(stats.resamples, stats.seed) + ": mean [lo, hi]"
    return text


def metric_table(records: list[dict], metric: str, fmt: str = "markdown", stats: Stats | None = None) -> str:
    """One table: rows = methods (in first-seen order), columns = bits; bold by :func:`column_stats`
    (the best mean only without ``stats``); ``†`` after a mean over runs made on different data."""
    cells = aggregate(records, metric)
    mixed = mixed_cells(records, metric)
    rows_order = list(dict.fromkeys(row_label(r) for r in records))
    bits = sorted({b for (_, b) in cells})
    best = _best(cells, bits)
    columns = {b: stats.column(records, metric, b) if stats else (None, {}) for b in bits}
    bold = {"latex": ("\\textbf{", "}"), "html": ("<b>", "</b>")}.get(fmt, ("**", "**"))
    escape = {"latex": latex_escape, "html": html.escape}.get(fmt, str)
    rows = []
    for m in rows_order:
        row = [escape(m)]
        for b in bits:
            v = cells.get((m, b))
            if not v:
                row.append("")
                continue
            chosen, intervals = columns[b]
            if stats is not None and stats.ci and m in intervals:
                text = f"{np.mean(v):.4f} [{intervals[m][0]:.4f}, {intervals[m][1]:.4f}]"
            else:
                text = f"{np.mean(v):.4f}" + (f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else "")
            if fmt == "latex":
                text = text.replace("±", "$\\pm$")
            marked = m in chosen if chosen is not None else np.isclose(np.mean(v), best[b])
            if len(rows_order) > 1 and marked:
                text = f"{bold[0]}{text}{bold[1]}"
            if (m, b) in mixed:
                text += " \\dag{}" if fmt == "latex" else " †"
            row.append(text)
        rows.append(row)
    return tabulate(rows, headers=[escape(metric)] + [f"{b} bits" for b in bits], tablefmt=FORMATS[fmt],
                    disable_numparse=True)


def report(records: list[dict], metrics: list[str], *, title: str, footer: str, fmt: str = "markdown",
           stats: Stats | None = None) -> str:
    """Every metric's table, with a title and the conventions footer (one section)."""
    seeds = sorted({r["seed"] for r in records})
    tables = [metric_table(records, m, fmt, stats) for m in metrics]
    spread = "" if stats is not None and stats.ci else " (mean ± sample std when > 1)"
    foot = f"{footer.rstrip('.')}. Seeds: {', '.join(map(str, seeds))}{spread}. {bold_rule(stats, metrics)}."
    if fmt == "latex":
        parts = [f"% {title}"] + tables + [latex_escape(foot)]
    elif fmt == "html":
        parts = [f"<h4>{html.escape(title)}</h4>"] + tables + [f'<p class="foot">{html.escape(foot)}</p>']
    else:
        parts = [f"## {title}" if fmt == "markdown" else title]
        parts += tables + [foot]
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ whole reports
def flatten(obj) -> dict[str, str]:
    """:func:`hashbench.results.flat` with each value as canonical JSON text, for comparing and showing."""
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in flat(obj).items()}


def label_variants(records: list[dict]) -> list[str]:
    """Give each record a row label (``_row``); a method run under several configs (different
    ``config_hash``) gets one row per config, ``method [first 8 hex digits]``. Returns one note per
    such row naming the settings in which its config differs from the method's other configs."""
    hashes: dict[str, list] = defaultdict(list)
    configs: dict[tuple, dict] = {}
    for r in records:
        h = r.get("config_hash")
        if h not in hashes[r["method"]]:
            hashes[r["method"]].append(h)
            configs[(r["method"], h)] = flatten({k: v for k, v in r.get("config", {}).items() if k != "eval"})
    notes = []
    for r in records:
        r["_row"] = r["method"]
        if len(hashes[r["method"]]) > 1:
            r["_row"] = f"{r['method']} [{(r.get('config_hash') or 'no hash')[:8]}]"
    for method, hs in hashes.items():
        if len(hs) < 2:
            continue
        flat = [configs[(method, h)] for h in hs]
        keys = sorted({k for f in flat for k in f if len({g.get(k) for g in flat}) > 1})
        for h, f in zip(hs, flat):
            diff = ", ".join(f"{k}={f.get(k, 'unset')}" for k in keys) or "same settings"
            notes.append(f"{method} [{(h or 'no hash')[:8]}]: {diff}")
    return notes


def sections(records: list[dict]) -> list[tuple[str, tuple, list[dict]]]:
    """(dataset, conventions, records) groups, in first-seen order."""
    from hashbench.results import conventions_of

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], conventions_of(r))].append(r)
    return [(d, c, rs) for (d, c), rs in groups.items()]


def section_tags(groups: list[tuple[str, tuple, list[dict]]]) -> list[str]:
    """For each section, the conventions that tell it from other sections of its dataset
    (``"ties=index"``), or ``""`` when its dataset has one section."""
    from hashbench.results import CONVENTION_KEYS

    per_dataset = defaultdict(list)
    for d, c, _ in groups:
        per_dataset[d].append(c)
    tags = []
    for dataset, conv, _ in groups:
        convs = per_dataset[dataset]
        differing = [i for i in range(len(CONVENTION_KEYS)) if len({c[i] for c in convs}) > 1]
        tags.append(", ".join(f"{CONVENTION_KEYS[i]}={conv[i]}" for i in differing))
    return tags


def table_metrics(records: list[dict]) -> list[str]:
    """The metrics tabulated by default: the runs' ``eval.tables`` (first-seen order)."""
    out = []
    for r in records:
        for m in r.get("config", {}).get("eval", {}).get("tables", DEFAULT_TABLES):
            if m not in out:
                out.append(m)
    return out or list(DEFAULT_TABLES)


def _stored(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(m for r in records for m in r["metrics"]))


def present(records: list[dict], metrics: list[str]) -> list[str]:
    """The default metrics some record of a section has; all its metrics when it has none of them."""
    have = _stored(records)
    return [m for m in metrics if m in have] or have


def check_metrics(records: list[dict], metrics: list[str]) -> None:
    """Refuse a metric no record has, naming those that exist."""
    have = _stored(records)
    for m in metrics:
        if m not in have:
            raise HashbenchError(f"no stored result has metric {m!r}; stored: {', '.join(suggest(m, have))} "
                                 "(hashbench eval out=DIR metrics=... adds metrics from saved codes)")


def render(records: list[dict], metrics: list[str] | None = None, fmt: str = "markdown",
           stats: Stats | None = None) -> str:
    """The report of merged records (:func:`hashbench.results.latest`): one section per dataset
    (and evaluation conventions), one table per metric, conventions and seeds in each footer.
    ``stats`` (per-query scores and bootstrap settings) decides bold by significance and adds
    intervals; without it bold marks the best mean."""
    from hashbench.metrics import conventions

    if fmt not in TABLE_FORMATS:
        raise HashbenchError(f"unknown table format {fmt!r}; valid: {', '.join(suggest(fmt, TABLE_FORMATS))}")
    records = [dict(r) for r in records]
    chosen = list(metrics) if metrics else None
    metrics = chosen or table_metrics(records)
    if fmt == "csv":
        return _csv(records, metrics, stats)
    groups = sections(records)
    parts = []
    for (dataset, conv, recs), tag in zip(groups, section_tags(groups)):
        notes = label_variants(recs)
        title = f"{dataset}: methods × code length" + (f" ({tag})" if tag else "")
        footer = conventions(ties=conv[0], ap_denominator=conv[1], no_relevant=conv[2])
        if notes:
            footer = footer.rstrip(".") + ". Rows by config: " + "; ".join(notes)
        for note in (no_relevant_note(recs), data_note(recs)):
            if note:
                footer = footer.rstrip(".") + ". Note: " + note
        shown = metrics if chosen else present(recs, metrics)
        parts.append(report(recs, shown, title=title, footer=footer, fmt=fmt, stats=stats))
    return "\n".join(parts)


def _csv(records: list[dict], metrics: list[str], stats: Stats | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "method", "config_hash", "bits", "metric", "mean", "std", "n_seeds", "seeds", "best",
                "ties", "ap_denominator", "no_relevant", "data_sha256", "lo", "hi"])
    for dataset, conv, recs in sections(records):
        label_variants(recs)
        for metric in metrics:
            cells = aggregate(recs, metric)
            bits = sorted({b for (_, b) in cells})
            best = _best(cells, bits)
            columns = {b: stats.column(recs, metric, b) if stats else (None, {}) for b in bits}
            rows = list(dict.fromkeys(row_label(r) for r in recs))
            for row in rows:
                first = next(r for r in recs if row_label(r) == row)
                for b in bits:
                    v = cells.get((row, b))
                    if not v:
                        continue
                    seeds = sorted(r["seed"] for r in recs if row_label(r) == row and r["bits"] == b
                                   and metric in r["metrics"])
                    chosen, intervals = columns[b]
                    marked = row in chosen if chosen is not None else bool(np.isclose(np.mean(v), best[b]))
                    lo, hi = intervals.get(row, ("", "")) if stats is not None and stats.ci else ("", "")
                    w.writerow([dataset, first["method"], first.get("config_hash") or "", b, metric,
                                repr(float(np.mean(v))), repr(float(np.std(v, ddof=1))) if len(v) > 1 else "",
                                len(v), " ".join(map(str, seeds)), marked, *conv,
                                " ".join(sorted({data_of(r) for r in recs if row_label(r) == row and r["bits"] == b
                                                 and metric in r["metrics"] and data_of(r)})),
                                repr(lo) if lo != "" else "", repr(hi) if hi != "" else ""])
    return buf.getvalue()
