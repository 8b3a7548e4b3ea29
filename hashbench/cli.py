"""``hashbench`` command line: run, list, data."""
from __future__ import annotations

import argparse
import logging
import sys

from hashbench.errors import HashbenchError

RUN_EPILOG_HEAD = """Each word is key=value; lists are comma-separated. Keys:"""


def _run_help() -> str:
    from hashbench.config import RUN_KEYS, SECTIONS

    lines = [RUN_EPILOG_HEAD]
    lines += [f"  {k:<10} {v}" for k, v in RUN_KEYS.items()]
    lines.append("Dotted keys set any config value of a section:")
    lines += [f"  {k + '.KEY':<10} {v}" for k, v in SECTIONS.items()]
    lines.append("Examples:\n  hashbench run methods=dsrh\n"
                 "  hashbench run methods=dsrh,random bits=32 seeds=0,1,2 epochs=5\n"
                 "  hashbench run methods=my_method plugins=my_plugin.py")
    return "\n".join(lines)


def cmd_run(args) -> int:
    from hashbench.config import build_run_config, parse_words
    from hashbench.plugins import import_plugin, load_entry_points
    from hashbench.runner import Runner

    words = parse_words(args.words)
    load_entry_points()
    for plugin in words.get("plugins", []):
        import_plugin(str(plugin))
    cfg = build_run_config(words)
    for plugin in cfg.get("plugins", []):
        import_plugin(str(plugin))
    Runner(cfg).run()
    return 0


def cmd_list(args) -> int:
    from hashbench.plugins import load_entry_points
    from hashbench.registry import REGISTRIES, entries, summary

    load_entry_points()
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        if len(kinds) > 1:
            print(f"{kind}:")
        for name, obj in entries(REGISTRIES[kind]).items():
            print(f"  {name:<16} {summary(obj)}")
    return 0


def parser() -> argparse.ArgumentParser:
    from hashbench.registry import REGISTRIES

    p = argparse.ArgumentParser(prog="hashbench", description="Benchmark toolkit for learning to hash.")
    sub = p.add_subparsers(dest="command", metavar="{run,list,data}")
    run = sub.add_parser("run", help="train/fit methods, evaluate by Hamming ranking, print tables",
                         description="Train or fit each method at each code length and seed, evaluate, "
                                     "append to out/results.jsonl and print one table per metric.",
                         epilog=_run_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("words", nargs="*", metavar="key=value")
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="registered names with a one-line description")
    lst.add_argument("kind", nargs="?", choices=list(REGISTRIES))
    lst.set_defaults(func=cmd_list)
    from hashbench import data_cli

    data_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="hashbench: warning: %(message)s")
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        return args.func(args)
    except HashbenchError as e:
        print(f"hashbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hashbench: interrupted; finished runs are in results.jsonl", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
