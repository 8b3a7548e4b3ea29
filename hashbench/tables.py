"""Paper-style tables: one per metric, methods × code lengths, mean ± std over seeds."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from tabulate import tabulate

FORMATS = {"markdown": "github", "latex": "latex_raw", "plain": "simple"}


def aggregate(records: list[dict], metric: str) -> dict[tuple[str, int], list[float]]:
    """(method, bits) → the metric's values over seeds."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in records:
        if metric in r["metrics"]:
            cells[(r["method"], r["bits"])].append(r["metrics"][metric])
    return cells


def metric_table(records: list[dict], metric: str, fmt: str = "markdown") -> str:
    """One table: rows = methods (in first-seen order), columns = bits; best per column in bold."""
    cells = aggregate(records, metric)
    methods = list(dict.fromkeys(r["method"] for r in records))
    bits = sorted({b for (_, b) in cells})
    best = {b: max((np.mean(v) for (m, bb), v in cells.items() if bb == b), default=None) for b in bits}
    bold = ("\\textbf{", "}") if fmt == "latex" else ("**", "**")
    rows = []
    for m in methods:
        row = [m]
        for b in bits:
            v = cells.get((m, b))
            if not v:
                row.append("")
                continue
            text = f"{np.mean(v):.4f}" + (f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else "")
            if fmt == "latex":
                text = text.replace("±", "$\\pm$")
            if len(methods) > 1 and np.isclose(np.mean(v), best[b]):
                text = f"{bold[0]}{text}{bold[1]}"
            row.append(text)
        rows.append(row)
    return tabulate(rows, headers=[metric] + [f"{b} bits" for b in bits], tablefmt=FORMATS[fmt],
                    disable_numparse=True)


def report(records: list[dict], metrics: list[str], *, title: str, footer: str, fmt: str = "markdown") -> str:
    """Every metric's table, with a title and the conventions footer."""
    seeds = sorted({r["seed"] for r in records})
    parts = [f"## {title}" if fmt == "markdown" else title]
    for metric in metrics:
        parts.append(metric_table(records, metric, fmt))
    parts.append(f"{footer.rstrip('.')}. Seeds: {', '.join(map(str, seeds))} (mean ± sample std when > 1).")
    return "\n\n".join(parts) + "\n"
