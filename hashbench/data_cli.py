"""``hashbench data``: check a dataset on disk (``verify``), decode it once into a cache (``prepare``).

Usage::

    hashbench data verify  dataset=NAME data_root=DIR [key=value ...] [--json]
    hashbench data prepare dataset=NAME data_root=DIR [image_size=224] [workers=N] [key=value ...]
    hashbench data time    dataset=NAME data_root=DIR [split=train] [batch_size=64] [workers=0]
                           [threads=1] [key=value ...]

Every ``key=value`` other than ``dataset``, ``workers``, ``decode``, ``split``, ``batch_size`` and
``threads`` is passed to the dataset's constructor (``protocol=standard``, ``n_query=100``,
``cache_dir=…``, …). Values ``true``/``false``, ``none`` and numbers are converted. Every action
takes ``--json``.

``verify`` parses the layout, looks for every file, fully decodes every labelled image that is
present (``decode=false`` skips this) and forms the splits of the chosen (default) protocol. It
prints a summary, or with ``--json`` one JSON object with ``dataset``, ``images``, ``labelled``,
``classes``, ``missing``, ``corrupt``, ``splits`` ({split: size}, or {"error": why}) and more.
Exit status 0; 1 when the splits cannot be formed, or when ``strict=true`` and an image is missing
or corrupt. Layout errors (wrong ``data_root``, misaligned label files) exit with 2.

``prepare`` decodes and warps every usable image once into ``<cache_dir>/images-<size>.npy`` (uint8,
memory-mapped); datasets built with the same ``image_size`` then read pixels from it.

``time`` reads one epoch of a split (default ``train``) through a ``DataLoader``, once decoding the
JPEG files and once from the prepared cache (when there is one), and prints both times (torch
uses ``threads`` threads, default 1: on a busy machine more threads make batching erratic).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from hashbench.errors import HashbenchError

_CLI_ONLY = ("dataset", "workers", "decode", "split", "batch_size", "threads")


def parse_value(text: str) -> Any:
    """``true``/``false``/``yes``/``no`` → bool, ``none``/``null`` → None, numbers → int/float."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_words(words: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise HashbenchError(f"data: expected key=value, got {word!r} (e.g. dataset=mirflickr25k)")
        out[key.strip()] = parse_value(value)
    return out


def add_parser(subparsers) -> None:
    """Add the ``data`` sub-command (``verify`` / ``prepare``) to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "data", help="verify a dataset on disk, or prepare its decoded-image cache",
        description="\n\n".join(__doc__.split("\n\n")[:3]).replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: hashbench data verify dataset=mirflickr25k data_root=/data/mirflickr --json")
    p.add_argument("action", choices=("verify", "prepare", "time"))
    p.add_argument("words", nargs="*", metavar="key=value",
                   help="dataset=NAME data_root=DIR and any dataset parameter")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.set_defaults(func=run)


def _build(options: dict[str, Any]):
    from hashbench.registry import DATASETS, build

    name = options.get("dataset")
    if not name:
        raise HashbenchError("data: say which dataset, e.g. dataset=mirflickr25k data_root=DIR")
    cfg = {k: v for k, v in options.items() if k not in _CLI_ONLY}
    cfg["type"] = name
    strict = bool(cfg.pop("strict", False))
    ds = build(DATASETS, cfg)
    return ds, strict


def verify(options: dict[str, Any]) -> tuple[dict, int]:
    """The ``data verify`` report (a dict) and its exit status."""
    ds, strict = _build(options)
    if ds.kind == "images" and options.get("decode", True):
        ds.scan(workers=options.get("workers"))
    summary = ds.inventory()
    status = 0
    try:
        summary["splits"] = ds.split_sizes()
        if getattr(ds, "split_info", None):
            summary["split_files"] = ds.split_info
    except HashbenchError as exc:
        summary["splits"] = {"error": str(exc)}
        status = 1
    summary["decoded"] = ds.kind == "images" and bool(options.get("decode", True))
    if strict and (summary["missing"] or summary["corrupt"]):
        status = 1
    return summary, status


def prepare(options: dict[str, Any]) -> tuple[dict, int]:
    ds, _ = _build(options)
    if ds.kind != "images":
        raise HashbenchError(f"data prepare: {options.get('dataset')} holds features, not images; "
                             "there is nothing to decode")
    result = ds.prepare(workers=options.get("workers"))
    result.update(dataset=ds.name, image_size=ds.image_size, usable=int(len(ds.pool)),
                  report=str(ds.report_file) if ds.report_file.is_file() else None)
    return result, 0


def time_epoch(options: dict[str, Any]) -> tuple[dict, int]:
    """Seconds to read one epoch of a split, decoding JPEGs and (if prepared) from the cache."""
    import time

    from torch.utils.data import DataLoader

    import torch

    torch.set_num_threads(int(options.pop("threads", 1)))  # oversubscribed threads distort timings
    split = options.pop("split", "train")
    batch_size = int(options.pop("batch_size", 64))
    workers = int(options.get("workers") or 0)
    result: dict[str, Any] = {"dataset": options.get("dataset"), "split": split,
                              "batch_size": batch_size, "workers": workers}
    for label, use_cache in (("decode", False), ("cache", True)):
        ds, _ = _build({**options, "use_cache": use_cache})
        if ds.kind != "images":
            raise HashbenchError(f"data time: {options.get('dataset')} holds features, not images")
        if use_cache and ds.inventory()["prepared_cache"] is None:
            result["cache"] = None  # run `hashbench data prepare` first
            continue
        data = ds.get(split)
        start = time.perf_counter()
        for _ in DataLoader(data, batch_size=batch_size, num_workers=workers):
            pass
        seconds = time.perf_counter() - start
        result["images"] = len(data)
        result[label] = {"seconds": round(seconds, 3), "images_per_s": round(len(data) / seconds, 1)}
    if result.get("cache"):
        result["speedup"] = round(result["decode"]["seconds"] / result["cache"]["seconds"], 1)
    return result, 0


def _print_verify(s: dict) -> None:
    pub = s.get("published") or {}

    def vs(key):
        return f"  (published: {pub[key]})" if key in pub and pub[key] != s[key] else ""

    names = ", ".join(s["class_names"][:8]) + (", …" if len(s["class_names"]) > 8 else "")
    print(f"dataset    {s['dataset']}  ({s['data_root']})")
    print(f"images     {s['images']}{vs('images')}")
    print(f"labelled   {s['labelled']}{vs('labelled')}")
    print(f"classes    {s['classes']}: {names}{vs('classes')}")
    print(f"missing    {s['missing']}" + (f"  e.g. {s['missing_files'][0]}" if s["missing"] else ""))
    corrupt = "" if s.get("decoded", True) else "  (not decoded: decode=false)"
    if s["corrupt"]:
        corrupt = f"  e.g. {next(iter(s['corrupt_files']))}"
    print(f"corrupt    {s['corrupt']}{corrupt}")
    if s.get("report"):
        print(f"report     {s['report']}")
    splits = s["splits"]
    if "error" in splits:
        print(f"splits     cannot be formed: {splits['error']}")
    else:
        where = s.get("split_files", {}).get("dir")
        proto = s.get("protocol")
        print("splits     " + (f"protocol {proto}: " if proto else "")
              + ", ".join(f"{k} {v}" for k, v in splits.items()) + (f"  ({where})" if where else ""))


def run(args: argparse.Namespace) -> int:
    """Entry point set by :func:`add_parser`; returns the exit status."""
    options = parse_words(args.words)
    if args.action == "verify":
        summary, status = verify(options)
        if args.json:
            print(json.dumps(summary))
        else:
            _print_verify(summary)
        return status
    if args.action == "time":
        result, status = time_epoch(options)
        if args.json:
            print(json.dumps(result))
        else:
            line = (f"{result['dataset']} {result['split']}: {result['images']} images, batch "
                    f"{result['batch_size']}, {result['workers']} workers: decoding "
                    f"{result['decode']['seconds']:.2f} s")
            if result.get("cache"):
                line += (f", prepared cache {result['cache']['seconds']:.2f} s "
                         f"({result['speedup']}x faster)")
            else:
                line += "; no prepared cache (run `hashbench data prepare` first)"
            print(line)
        return status
    result, status = prepare(options)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"prepared {result['images']} images of {result['dataset']} at "
              f"{result['image_size']}x{result['image_size']} in {result['seconds']:.1f} s "
              f"({result['bytes'] / 2**20:.1f} MiB): {result['cache']}"
              + (f"; {result['corrupt']} corrupt, see {result['report']}" if result["corrupt"] else ""))
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hashbench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except HashbenchError as exc:
        print(f"hashbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
