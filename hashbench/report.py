"""``hashbench report``: one self-contained HTML page of an ``out=`` folder.

Per dataset (and set of evaluation conventions) the page shows the tables (with bootstrap
intervals where the runs' per-query scores are stored), the figures of ``hashbench plot`` (when
matplotlib is installed; the page says so otherwise), the evaluation conventions, the settings in
which the runs differ, and retrieval examples: for a few queries (a seeded choice, or
``queries=``), the query and each method's top-k database items by Hamming distance, each marked
with the number of labels it shares with the query. Images are embedded as data URIs, so the one
file is the whole report. Thumbnails come from the dataset rebuilt from the runs' own config and
checked against their data fingerprint; where that is not possible (feature datasets, data that
changed or cannot be read) the examples show label sets instead, and say why.
"""
from __future__ import annotations

import base64
import html
import importlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np

import hashbench
from hashbench.atomic import atomic_write_text
from hashbench.errors import HashbenchError
from hashbench.results import CONVENTION_KEYS, DamagedCodes, ResultStore, check_out_folder, data_of, latest
from hashbench.tables import (check_metrics, label_variants, present, render, row_label, section_tags,
                              sections, table_metrics, flatten)

N_QUERIES = 5
TOPK = 8
QUERY_SEED = 0
THUMB = 72  # px, the longer side of a thumbnail

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#1b1b1b;padding:0 1em;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.foot,.note{font-size:.85em;color:#444;max-width:75em}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4em .8em}
figure{display:inline-block;margin:.4em}figure img{max-width:560px;border:1px solid #ddd}
.query{margin:1.2em 0;padding:.6em;border:1px solid #ddd;border-radius:6px}
.row{display:flex;align-items:flex-start;gap:.4em;margin:.3em 0}
.who{width:9em;flex:none;font-size:.85em;font-weight:600;padding-top:.2em}
.item{width:""" + str(THUMB + 8) + """px;flex:none;font-size:.72em;text-align:center;word-break:break-word}
img.thumb{display:block;margin:auto;border:4px solid #999;image-rendering:pixelated}
img.thumb.small{width:64px;height:auto}
.rel0 img.thumb{border-color:#d33}.rel1 img.thumb{border-color:#7cbf5a}.rel2 img.thumb{border-color:#2e9a2e}
.rel3 img.thumb{border-color:#146b14}.isq img.thumb{border-color:#2661c9}
.labels{color:#555}.rel0 .labels{color:#b00}
"""


def _e(text) -> str:
    return html.escape(str(text))


# ------------------------------------------------------------------------------ words
def _check_words(words: dict) -> None:
    if "queries" in words and "n_queries" in words:
        raise HashbenchError("give queries=I,J,... (which queries) or n_queries=N (how many, seeded), not both")


# ------------------------------------------------------------------------------ images
def _data_uri(arr: np.ndarray) -> str:
    """(3, H, W) uint8 → a PNG (small images) or JPEG data URI of a thumbnail."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(np.asarray(arr, dtype=np.uint8).transpose(1, 2, 0)))
    scale = THUMB / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))),
                       Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small = im.size[0] * im.size[1] <= 48 * 48
    im.save(buf, format="PNG" if small else "JPEG", quality=85)
    return f"data:image/{'png' if small else 'jpeg'};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _image_source(record: dict, codes: dict):
    """``(query split, database split, class names, reason)``: the splits whose items are the runs'
    query and database (``None`` and the reason where thumbnails cannot be shown)."""
    from hashbench.datasets.base import split_digest
    from hashbench.registry import DATASETS, build

    cfg = (record.get("config") or {}).get("dataset")
    if not isinstance(cfg, dict):
        return None, None, [], "the runs do not record their dataset config"
    try:
        ds = build(DATASETS, cfg)
    except (HashbenchError, OSError, ValueError) as e:
        return None, None, [], f"the dataset could not be built from the runs' config ({e})"
    names = list(getattr(ds, "class_names", []) or [])
    if ds.kind != "images":
        return None, None, names, f"{ds.name or cfg.get('type')} holds {ds.kind}, not images: label sets shown"
    splits = {s: ds.get(s) for s in ("query", "database")}
    stated = (record.get("data") or {}).get("splits") or {}
    for s, split in splits.items():
        if len(split) != len(codes[s]):
            return None, None, names, f"the {s} split has {len(split)} items now, the runs' codes {len(codes[s])}"
        if s in stated and split_digest(split) != stated[s].get("sha256"):
            return None, None, names, f"the {s} split is not the data the runs were made on (fingerprint differs)"
    reason = "" if stated else "the runs predate data fingerprints: images shown as the dataset reads them now"
    return splits["query"], splits["database"], names, reason


def _labels_text(row: np.ndarray, names: list[str]) -> str:
    idx = np.flatnonzero(row)
    if not len(idx):
        return "no label"
    return ", ".join(names[i] if i < len(names) else f"#{i}" for i in idx)


# ------------------------------------------------------------------------------ examples
def ranked(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Hamming distances of the ``k`` database codes nearest to ``query`` (codes in
    {0, 1}); equal distances in database order."""
    dist = np.count_nonzero(database != query[None, :], axis=1)
    order = np.argsort(dist, kind="stable")[:k]
    return order, dist[order]


def choose_queries(n_query: int, words: dict) -> list[int]:
    if "queries" in words:
        chosen = [int(i) for i in words["queries"]]
        bad = [i for i in chosen if not 0 <= i < n_query]
        if bad:
            raise HashbenchError(f"queries={','.join(map(str, bad))}: the query split has {n_query} items, "
                                 f"indices 0..{n_query - 1}")
        return list(dict.fromkeys(chosen))
    n = min(int(words.get("n_queries", N_QUERIES)), n_query)
    rng = np.random.default_rng(words.get("query_seed", QUERY_SEED))
    return sorted(int(i) for i in rng.choice(n_query, size=n, replace=False))


def _item(label_html: str, uri: str | None, title: str, css: str, kind: str, index: int) -> str:
    small = uri is not None and uri.startswith("data:image/png")
    img = (f'<img class="thumb{" small" if small else ""}" src="{uri}" alt="{_e(title)}" title="{_e(title)}" data-split="{kind}" '
           f'data-index="{index}">' if uri else "")
    return f'<div class="item {css}">{img}<div>{label_html}</div></div>'


def examples(store: ResultStore, recs: list[dict], words: dict) -> tuple[str, int]:
    """The retrieval examples of one section (HTML) and how many thumbnails it holds."""
    from hashbench.stored import store_of

    bits = words.get("example_bits") or max(r["bits"] for r in recs)
    at = [r for r in recs if r["bits"] == bits and r.get("config_hash")
          and store_of(r, store).has_codes(r["config_hash"], r["bits"], r["seed"])]
    if not at:
        return f'<p class="note">No saved codes at {bits} bits in this section: no retrieval examples.</p>', 0
    rows = list(dict.fromkeys(row_label(r) for r in at))
    seeds = {row: sorted(r["seed"] for r in at if row_label(r) == row) for row in rows}
    common = sorted(set.intersection(*(set(s) for s in seeds.values())))
    codes, skipped = {}, []
    for row in rows:
        seed = common[0] if common else seeds[row][0]
        rec = next(r for r in at if row_label(r) == row and r["seed"] == seed)
        try:
            codes[row] = (rec, store_of(rec, store).load_codes(rec["config_hash"], bits, seed))
        except DamagedCodes as e:
            skipped.append(f"{row}: {e}")
    if not codes:
        return '<p class="note">' + _e("; ".join(skipped)) + "</p>", 0
    first_rec, first = next(iter(codes.values()))
    for row, (rec, c) in codes.items():
        if data_of(rec) != data_of(first_rec) or len(c["query"]) != len(first["query"]) \
                or not np.array_equal(c["query_labels"], first["query_labels"]):
            raise HashbenchError(f"{row} at {bits} bits was scored on other queries than {next(iter(codes))}; "
                                 "select one data version with dataset=, methods= or seeds=")
    picked = choose_queries(len(first["query"]), words)
    k = min(int(words.get("topk", TOPK)), len(first["database"]))
    qsplit, dsplit, names, reason = _image_source(first_rec, first)
    ql, dl = first["query_labels"], first["database_labels"]
    seed_text = (f"seed {common[0]}" if common else "each method's lowest seed (no seed common to all)")
    parts = [f"<p>At {bits} bits, codes of {seed_text}; queries "
             f"{', '.join(map(str, picked))} of {len(ql)} (" +
             ("chosen with queries=" if "queries" in words else f"seeded choice, query_seed="
              f"{words.get('query_seed', QUERY_SEED)}") +
             f"); top {k} of {len(dl)} database items by Hamming distance d, equal distances in database order "
             "(the metrics average over those orders instead). Each item shows d and the number of labels it "
             "shares with the query (border: red none, green one or more).</p>"]
    if reason:
        parts.append(f'<p class="note">Thumbnails: {_e(reason)}.</p>')
    if skipped:
        parts.append('<p class="note">Left out: ' + _e("; ".join(skipped)) + "</p>")
    thumbs, uris = 0, {}

    def thumbnail(split, i: int) -> str | None:  # an item retrieved by several methods is read and encoded once
        if split is None:
            return None
        if (id(split), i) not in uris:
            uris[(id(split), i)] = _data_uri(split[i][0].numpy())
        return uris[(id(split), i)]

    for qi in picked:
        q_uri = thumbnail(qsplit, qi)
        thumbs += q_uri is not None
        q_text = _labels_text(ql[qi], names)
        parts.append('<div class="query"><div class="row"><div class="who">query ' + str(qi) + "</div>"
                     + _item(f'<span class="labels">{_e(q_text)}</span>', q_uri, f"query {qi}: {q_text}", "isq",
                             "query", qi) + "</div>")
        for row, (rec, c) in codes.items():
            order, dist = ranked(c["query"][qi], c["database"], k)
            shared = (dl[order].astype(np.int64) @ ql[qi].astype(np.int64)).astype(int)
            cells = []
            for j, d, s in zip(order, dist, shared):
                uri = thumbnail(dsplit, int(j))
                thumbs += uri is not None
                text = _labels_text(dl[j], names)
                label = f"d={d} · {s} shared" + ("" if uri else f'<br><span class="labels">{_e(text)}</span>')
                cells.append(_item(label, uri, f"database {j}: {text} (d={d}, {s} shared)",
                                   f"rel{min(int(s), 3)}", "database", int(j)))
            parts.append(f'<div class="row"><div class="who">{_e(row)}</div>' + "".join(cells) + "</div>")
        parts.append("</div>")
    return "\n".join(parts), thumbs


# ------------------------------------------------------------------------------ other sections
def differing_settings(recs: list[dict]) -> str:
    """A table of the settings (config, versions, device, commit) in which the section's run
    configs differ; the settings they share folded below it."""
    configs: dict[str, dict] = {}
    for r in recs:
        flat = flatten({k: v for k, v in (r.get("config") or {}).items() if k != "eval"})
        flat.update({f"versions.{k}": str(v) for k, v in (r.get("versions") or {}).items()})
        flat["device"] = str(r.get("device", ""))
        flat["git_commit"] = str(r.get("git_commit") or "")[:10]
        configs.setdefault(row_label(r), {})
        for key, value in flat.items():
            configs[row_label(r)].setdefault(key, set()).add(value)
    keys = sorted({k for c in configs.values() for k in c})
    varying = [k for k in keys if len({frozenset(c.get(k, {"unset"})) for c in configs.values()}) > 1
               or any(len(c.get(k, ())) > 1 for c in configs.values())]
    shared = [k for k in keys if k not in varying]

    def cell(values: set | None) -> str:
        return "unset" if not values else " / ".join(sorted(values))

    out = []
    if varying:
        head = "".join(f"<th>{_e(k)}</th>" for k in varying)
        body = "".join(f"<tr><td>{_e(row)}</td>" + "".join(f"<td>{_e(cell(c.get(k)))}</td>" for k in varying)
                       + "</tr>" for row, c in configs.items())
        out.append(f'<table class="settings"><tr><th>row</th>{head}</tr>{body}</table>')
    else:
        out.append("<p>Every run of this section has the same settings.</p>")
    if shared:
        first = next(iter(configs.values()))
        items = "".join(f"<tr><td>{_e(k)}</td><td>{_e(cell(first.get(k)))}</td></tr>" for k in shared)
        out.append(f"<details><summary>{len(shared)} settings shared by every run</summary><table>{items}</table>"
                   "</details>")
    return "\n".join(out)


def _conventions(recs: list[dict], conv: tuple) -> str:
    from hashbench.metrics import conventions

    sizes = sorted({(r.get("eval_info") or {}).get("n_queries") for r in recs} - {None})
    dbs = sorted({(r.get("eval_info") or {}).get("n_database") for r in recs} - {None})
    text = conventions(**dict(zip(CONVENTION_KEYS, conv)))
    where = (f" Queries: {', '.join(map(str, sizes))}; database items: {', '.join(map(str, dbs))}."
             if sizes and dbs else "")
    return f"<p>{_e(text)}.{_e(where)}</p>"


def _figures(words: dict, stream) -> tuple[dict[str, Path], str, tempfile.TemporaryDirectory | None]:
    """The PNGs of ``hashbench plot`` drawn into a temporary folder, by file name; or a note why none."""
    from hashbench.plots import MISSING, plot

    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return {}, MISSING, None
    tmp = tempfile.TemporaryDirectory(prefix="hashbench-report-")
    keep = {k: v for k, v in words.items() if k in ("out", "metrics", "methods", "dataset", "bits", "seeds")}
    paths = plot({**keep, "to": tmp.name}, stream=stream)
    return {p.name: p for p in paths if p.suffix == ".png"}, "", tmp


def _embed_figures(pngs: dict[str, Path], prefix: str) -> list[str]:
    out = []
    for name in sorted(n for n in pngs if n.startswith(prefix + "-")):
        uri = "data:image/png;base64," + base64.b64encode(pngs[name].read_bytes()).decode()
        out.append(f'<figure><img class="figure" src="{uri}" alt="{_e(name)}"><figcaption>{_e(name)}'
                   "</figcaption></figure>")
    return out


# ------------------------------------------------------------------------------ the page
def report(words: dict, stream=None) -> tuple[Path, dict]:
    """Write ``report.html`` for ``words['out']`` (to ``words['to']``, default ``OUT/report.html``);
    returns its path and counts (sections, tables, figures, thumbnails)."""
    from hashbench.plots import section_stem
    from hashbench.stored import load_results, select, stats_of

    _check_words(words)
    given = words.get("out", "out")
    folders = given if isinstance(given, (list, tuple)) else [given]
    out = ", ".join(map(str, folders))
    store, records = load_results(given)
    source = ", ".join(str(ResultStore(f).path) for f in folders)
    merged = select(latest(records), words)
    metrics = words.get("metrics") or table_metrics(merged)
    if "metrics" in words:
        check_metrics(merged, metrics)
    to = Path(words.get("to") or store.out / "report.html")  # of several folders: in the first
    if to.is_dir():
        raise HashbenchError(f"to={to} is a folder; give the report's file name, e.g. to={to / 'report.html'}")
    check_out_folder(to.parent, "to")
    if words.get("example_bits") and words["example_bits"] not in {r["bits"] for r in merged}:
        raise HashbenchError(f"example_bits={words['example_bits']}: no stored run has that code length; stored: "
                             + ", ".join(map(str, sorted({r['bits'] for r in merged}))))
    sizes = [n for r in merged if isinstance(n := (r.get("eval_info") or {}).get("n_queries"), int)]
    if "queries" in words and sizes:  # checked against what the runs were scored on, before anything is drawn
        choose_queries(min(sizes), words)
    pngs, no_figures, tmp = _figures(words, stream)
    counts = dict(sections=0, tables=0, figures=0, thumbnails=0)
    body, toc = [], []
    groups = sections(merged)
    try:
        for (dataset, conv, recs), tag in zip(groups, section_tags(groups)):
            recs = [dict(r) for r in recs]
            label_variants(recs)
            shown = metrics if "metrics" in words else present(recs, metrics)
            anchor = f"s{counts['sections']}"
            counts["sections"] += 1
            title = dataset + (f" ({tag})" if tag else "")
            toc.append(f'<li><a href="#{anchor}">{_e(title)}</a></li>')
            have_scores = all(all(m in (r.get("_per_query") or {}) for m in shown if m in r["metrics"]) for r in recs)
            stats = stats_of(store, {**words, "ci": have_scores})
            tables = render(recs, shown, fmt="html", stats=stats)
            counts["tables"] += tables.count("<table>")
            section = [f'<h2 id="{anchor}">{_e(title)}</h2>', "<h3>Tables</h3>"]
            if not have_scores:
                section.append('<p class="note">Intervals need every run\'s per-query scores, which older runs '
                               "lack: mean ± std shown (hashbench eval out=DIR force=true stores them).</p>")
            section.append(tables)
            section.append("<h3>Figures</h3>")
            figs = _embed_figures(pngs, section_stem(dataset, tag))
            counts["figures"] += len(figs)
            section += figs or [f'<p class="note">No figures: {_e(no_figures or "nothing to draw")}.</p>']
            section += ["<h3>Evaluation conventions</h3>", _conventions(recs, conv),
                        "<h3>Settings that differ between runs</h3>", differing_settings(recs),
                        "<h3>Retrieval examples</h3>"]
            html_examples, n = examples(store, recs, words)
            counts["thumbnails"] += n
            section.append(html_examples)
            body.append("\n".join(section))
    finally:
        if tmp is not None:
            tmp.cleanup()
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>hashbench report: {_e(out)}</title><style>{CSS}</style></head><body>"
            f"<h1>hashbench report: {_e(out)}</h1>"
            f"<p>{len(merged)} runs from {_e(source)}; written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} by "
            f"hashbench {_e(hashbench.__version__)}.</p><ul>{''.join(toc)}</ul>" + "\n".join(body)
            + "</body></html>\n")
    atomic_write_text(to, page)
    return to, counts
