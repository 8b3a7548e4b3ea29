"""``hashbench data``: check a dataset on disk (``verify``), decode it once into a cache (``prepare``).

Usage::

    hashbench data verify  dataset=NAME data_root=DIR [key=value ...] [--json]
    hashbench data prepare dataset=NAME data_root=DIR [image_size=224] [workers=N] [key=value ...]
    hashbench data time    dataset=NAME data_root=DIR [split=train] [batch_size=64] [workers=0]
                           [threads=1] [key=value ...]

``dataset=NAME`` is what it is for ``hashbench run``: a registered dataset or a preset in
``configs/datasets/NAME.py`` (``coco``, ``imagenet100``, ... over ``listfile``), whose settings the
words below override. Every ``key=value`` other than ``dataset``, ``workers``, ``decode``,
``split``, ``batch_size`` and ``threads`` is a parameter of the dataset's constructor
(``protocol=standard``, ``n_query=100``, ``cache_dir=…``, …), parsed and checked as ``dataset.KEY``
words of ``hashbench run`` are. Every action takes ``--json``.

``verify`` parses the layout, looks for every file, fully decodes every labelled image that is
present (``decode=false`` skips this) and forms the splits of the chosen (default) protocol. It
prints a summary, or with ``--json`` one JSON object with ``dataset``, ``images``, ``labelled``,
``classes``, ``missing``, ``corrupt``, ``splits`` ({split: size}, or {"error": why}), ``preset``
(when ``dataset=`` named one) and more.
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
from typing import Any

from hashbench.errors import HashbenchError

_CLI_ONLY = ("dataset", "workers", "decode", "split", "batch_size", "threads")


def parse_words(words: list[str]) -> dict[str, Any]:
    """The words of ``hashbench data``: the shared parser (:func:`hashbench.config.parse_words`) with
    :data:`hashbench.config.DATA_WORDS`; the dataset's own parameters are checked by :func:`_build`."""
    from hashbench.config import DATA_WORDS, parse_words as parse

    return parse(words, DATA_WORDS)


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
    from hashbench.config import check_dataset, dataset_preset
    from hashbench.registry import DATASETS, build

    name = options.get("dataset")
    if not name:
        raise HashbenchError("data: say which dataset, e.g. dataset=mirflickr25k data_root=DIR")
    block, _ = dataset_preset(name)  # a preset (coco, ...) is its dataset block, as for hashbench run
    cfg = check_dataset({**block, **{k: v for k, v in options.items() if k not in _CLI_ONLY}}, prefix="",
                        name=name)
    # strict=true decides the exit status of verify; the dataset is built to report, not to refuse
    strict = bool(cfg.pop("strict", False))
    return build(DATASETS, cfg), strict


def verify(options: dict[str, Any]) -> tuple[dict, int]:
    """The ``data verify`` report (a dict) and its exit status."""
    ds, strict = _build(options)
    decode = options.get("decode", True)
    if decode:
        ds.scan(workers=options.get("workers"))
    summary = ds.inventory()
    if options["dataset"] != summary["dataset"]:
        summary["preset"] = options["dataset"]
    status = 0
    try:
        summary["splits"] = ds.split_sizes()
        files = ds.split_files()
        if files:
            summary["split_files"] = files
    except HashbenchError as exc:
        summary["splits"] = {"error": str(exc)}
        status = 1
    summary["decoded"] = bool(decode and ds.preparable)
    if strict and (summary["missing"] or summary["corrupt"]):
        status = 1
    return summary, status


def prepare(options: dict[str, Any]) -> tuple[dict, int]:
    ds, _ = _build(options)
    return ds.prepare(workers=options.get("workers")), 0


def time_epoch(options: dict[str, Any]) -> tuple[dict, int]:
    """Seconds to read one epoch of a split: decoding the files and, if prepared, from the cache
    (a dataset held in memory: one pass, labelled ``decode``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(options.pop("threads", 1))  # oversubscribed threads distort timings
    try:
        return _time_passes(options)
    finally:
        torch.set_num_threads(before)


def _time_passes(options: dict[str, Any]) -> tuple[dict, int]:
    import time

    from torch.utils.data import DataLoader

    split = options.pop("split", "train")
    batch_size = options.pop("batch_size", 64)
    workers = options.get("workers") or 0
    ds, _ = _build(options)
    result: dict[str, Any] = {"dataset": options.get("dataset"), "split": split, "batch_size": batch_size,
                              "workers": workers, "source": "files" if ds.preparable else "memory"}
    if ds.kind != "images":
        raise HashbenchError(f"data time: {ds.name} holds features, not images")
    passes = [("decode", ds)]
    if ds.preparable:
        passes = [("decode", _build({**options, "use_cache": False})[0])]
        cached = _build({**options, "use_cache": True})[0]
        if cached.inventory()["prepared_cache"] is not None:
            passes.append(("cache", cached))
    result["cache"] = None  # run `hashbench data prepare` first
    for label, data_set in passes:
        data = data_set.get(split)
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
    where = s.get("data_root") or f"{s['kind']} held in memory"
    preset = f", preset {s['preset']}" if s.get("preset") else ""
    print(f"dataset    {s['dataset']}{preset}  ({where})")
    print(f"images     {s['images']}{vs('images')}")
    print(f"labelled   {s['labelled']}{vs('labelled')}")
    print(f"classes    {s['classes']}: {names}{vs('classes')}")
    print(f"missing    {s['missing']}" + (f"  e.g. {s['missing_files'][0]}" if s["missing"] else ""))
    corrupt = "" if s.get("decoded", True) else "  (nothing decoded: decode=false, or held in memory)"
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
            how = "decoding" if result["source"] == "files" else "reading from memory"
            line = (f"{result['dataset']} {result['split']}: {result['images']} images, batch "
                    f"{result['batch_size']}, {result['workers']} workers: {how} "
                    f"{result['decode']['seconds']:.2f} s")
            if result["source"] == "memory":
                pass  # nothing to prepare
            elif result.get("cache"):
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
