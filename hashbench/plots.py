"""Figures from an ``out=`` folder (``hashbench plot``): PNG files drawn with matplotlib.

Per dataset (and set of evaluation conventions):

- ``<dataset>-<metric>.png``: each tabulated metric against code length, one line per method,
  mean over seeds with sample-std error bars (from ``results.jsonl``);
- ``<dataset>-curves-<bits>bits.png``: NDCG@k and precision@k against k, one line per method;
- ``<dataset>-pr-<bits>bits.png``: precision against recall within Hamming radius 0..bits;
- ``<dataset>-curves.json``: the numbers behind the last two.

The curves are computed from the saved codes (``out/codes/``) by
:func:`hashbench.metrics.curves`, under the conventions the runs were scored with, and averaged
over seeds. matplotlib is an optional extra: ``pip install "hashbench[plot]"``.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.atomic import atomic_write, atomic_write_text
from hashbench.results import CONVENTION_KEYS, DamagedCodes, ResultStore, check_out_folder, latest
from hashbench.tables import check_metrics, label_variants, present, row_label, section_tags, sections, table_metrics

MISSING = "plotting needs matplotlib, an optional extra: pip install 'hashbench[plot]'"


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise HashbenchError(MISSING) from None
    return Figure, FigureCanvasAgg


def _safe(name: str) -> str:
    return re.sub(r"[^\w@.+-]", "_", name)


def section_stem(dataset: str, tag: str) -> str:
    """The start of every figure file name of one section: ``<dataset>[-<conventions tag>]``."""
    return _safe(dataset + (f"-{tag.replace(', ', '-')}" if tag else ""))


def _save(fig, canvas_cls, path: Path) -> Path:
    canvas_cls(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _metric_figure(Figure, recs: list[dict], metric: str, title: str):
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    all_bits = set()
    for row in dict.fromkeys(row_label(r) for r in recs):
        by_bits = defaultdict(list)
        for r in recs:
            if row_label(r) == row and metric in r["metrics"]:
                by_bits[r["bits"]].append(r["metrics"][metric])
        if not by_bits:
            continue
        bits = sorted(by_bits)
        all_bits |= set(bits)
        mean = [np.mean(by_bits[b]) for b in bits]
        std = [np.std(by_bits[b], ddof=1) if len(by_bits[b]) > 1 else 0.0 for b in bits]
        ax.errorbar(bits, mean, yerr=std, marker="o", capsize=3, label=row)
    ax.set_xticks(sorted(all_bits))
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _curves(store: ResultStore, recs: list[dict], conv: tuple, ks) -> tuple[dict, list[str]]:
    """(row, bits) → curves averaged over seeds; and the runs left out for lack of saved codes."""
    from hashbench.metrics import DEFAULT_CURVE_KS, curves
    from hashbench.stored import store_of

    settings = dict(zip(CONVENTION_KEYS, conv))
    runs = defaultdict(list)
    missing = []
    for r in recs:
        h = r.get("config_hash")
        if h and store_of(r, store).has_codes(h, r["bits"], r["seed"]):
            runs[(row_label(r), r["bits"])].append(r)
        else:
            missing.append(f"{r['method']} {r['bits']} bits seed {r['seed']}")
    out = {}
    for (row, bits), rs in list(runs.items()):
        per_seed = []
        for r in list(rs):
            try:
                c = store_of(r, store).load_codes(r["config_hash"], r["bits"], r["seed"])
            except DamagedCodes as e:  # one damaged file costs its run's curves, not the figures
                missing.append(f"{r['method']} {r['bits']} bits seed {r['seed']} ({e})")
                rs.remove(r)
                continue
            n_db = len(c["database"])
            cuts = [k for k in (ks or DEFAULT_CURVE_KS) if k <= n_db] or [n_db]
            per_seed.append(curves(c["query"], c["database"], c["query_labels"], c["database_labels"], ks=cuts,
                                   ties=settings["ties"], no_relevant=settings["no_relevant"]))
        if not per_seed:
            continue
        cuts = min((list(p["k"]) for p in per_seed), key=len)
        out[(row, bits)] = dict(
            k=[int(k) for k in cuts], seeds=sorted(int(r["seed"]) for r in rs),
            **{name: np.mean([p[name][: len(cuts)] for p in per_seed], axis=0).tolist() for name in ("ndcg", "p")},
            radius=per_seed[0]["radius"].tolist(),
            **{name: np.mean([p[name] for p in per_seed], axis=0).tolist() for name in ("precision", "recall")})
    return out, missing


def plot(words: dict, stream=None) -> list[Path]:
    """Write the figures of ``words['out']`` (filters ``methods``, ``dataset``, ``bits``, ``seeds``)
    into ``words['to']`` (default ``OUT/figures``); returns the paths written."""
    from hashbench.stored import load_results, select

    Figure, Canvas = _matplotlib()
    given = words.get("out", "out")
    store, records = load_results(given)
    merged = select(latest(records), words)
    metrics = words.get("metrics") or table_metrics(merged)
    check_metrics(merged, metrics)
    to = check_out_folder(words.get("to", store.out / "figures"), "to")  # of several folders: the first's
    groups = sections(merged)
    written, left_out = [], []
    for (dataset, conv, recs), tag in zip(groups, section_tags(groups)):
        recs = [dict(r) for r in recs]
        label_variants(recs)
        name = section_stem(dataset, tag)
        for metric in (metrics if "metrics" in words else present(recs, metrics)):
            fig = _metric_figure(Figure, recs, metric, f"{dataset}: {metric} vs code length")
            written.append(_save(fig, Canvas, to / f"{name}-{_safe(metric)}.png"))
        data, missing = _curves(store, recs, conv, words.get("ks"))
        left_out += missing
        for bits in sorted({b for (_, b) in data}):
            rows = [(row, c) for (row, b), c in data.items() if b == bits]
            fig = Figure(figsize=(10, 4))
            for j, (key, label) in enumerate((("ndcg", "NDCG@k"), ("p", "precision@k"))):
                ax = fig.add_subplot(1, 2, j + 1)
                for row, c in rows:
                    ax.plot(c["k"], c[key], marker="o", markersize=3, label=row)
                ax.set_xscale("log")
                ks = sorted({k for _, c in rows for k in c["k"]})
                ax.set_xticks(ks, [str(k) for k in ks])
                ax.minorticks_off()
                ax.set_xlabel("k (items retrieved)")
                ax.set_ylabel(label)
                ax.set_title(f"{dataset}, {bits} bits: {label}")
                ax.grid(alpha=0.3)
                _legend(ax)
            written.append(_save(fig, Canvas, to / f"{name}-curves-{bits}bits.png"))
            fig = Figure(figsize=(5.5, 4))
            ax = fig.add_subplot()
            for row, c in rows:
                ax.plot(c["recall"], c["precision"], marker=".", label=row)
            ax.set_xlabel("recall within Hamming radius r")
            ax.set_ylabel("precision within Hamming radius r")
            ax.set_title(f"{dataset}, {bits} bits: precision–recall, r = 0..{bits}")
            ax.grid(alpha=0.3)
            _legend(ax)
            written.append(_save(fig, Canvas, to / f"{name}-pr-{bits}bits.png"))
        if data:
            payload = dict(dataset=dataset, conventions=dict(zip(CONVENTION_KEYS, conv)),
                           curves=[dict(row=row, bits=b, **c) for (row, b), c in data.items()])
            path = to / f"{name}-curves.json"
            atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
            written.append(path)
    if left_out and stream is not None:
        print(f"no usable saved codes for {len(left_out)} runs (older runs, or refused): no curves for "
              + ", ".join(left_out[:5]) + (" …" if len(left_out) > 5 else ""), file=stream)
    return written
