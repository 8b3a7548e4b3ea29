"""``hashbench`` command line: run, status, eval, table, compare, plot, report, list, data."""
from __future__ import annotations

import argparse
import logging
import sys

from hashbench.errors import HashbenchError

RUN_EPILOG_HEAD = """Each word is key=value; lists are comma-separated. Keys:"""


def _keys_help(words, examples: list[str], extra: str = "") -> str:
    lines = [RUN_EPILOG_HEAD]
    lines += [f"  {k:<12} {f.help}" for k, f in words.keys.items()]
    if words.sections:
        lines.append("Dotted keys set any config value of a section:")
        lines += [f"  {k + '.KEY':<12} {v}" for k, v in words.sections.items()]
    if words.free:
        lines.append(f"Any other key=value: {words.free}.")
    if extra:
        lines.append(extra)
    lines.append("Examples:\n" + "\n".join(f"  {e}" for e in examples))
    return "\n".join(lines)


def _section_help() -> str:
    """Every declared key of the train, eval and classic sections, with what it may be and its default."""
    from hashbench.params import describe
    from hashbench.settings import SECTIONS

    lines = ["Section keys (backbone.*, dataset.*, method.*: the parameters of the class their type names; "
             "hashbench list ... shows the types):"]
    for schema in SECTIONS.values():
        for key, f in schema.fields.items():
            lines.append(f"  {schema.name + '.' + key:<24} {describe(f.constraints)}; default {f.default!r}. {f.help}")
    return "\n".join(lines)


def _run_help() -> str:
    from hashbench.config import RUN_WORDS

    return _keys_help(RUN_WORDS, extra=_section_help(), examples=[
        "hashbench run methods=dsrh",
        "hashbench run methods=dsrh,random bits=32 seeds=0,1,2 epochs=5 out=sweep   (rerun: skips what is done)",
        "hashbench run methods=my_method plugins=my_plugin.py",
        "hashbench run methods=dsrh,dpsh,itq bits=16,32,64 seeds=0,1,2 out=sweep workers=4   (4 GPUs: one each)",
        "hashbench run methods=dsrh out=/shared/sweep launcher=submitit submit.partition=gpu submit.gpus_per_task=1"])


def _eval_help() -> str:
    from hashbench.config import EVAL_WORDS

    return _keys_help(EVAL_WORDS, [
        "hashbench eval out=sweep metrics=map@100,p@10,ndcg@50",
        "hashbench eval out=sweep eval.ties=index methods=dsrh bits=32,64"])


def _table_help() -> str:
    from hashbench.config import TABLE_WORDS

    return _keys_help(TABLE_WORDS, [
        "hashbench table out=sweep", "hashbench table out=sweep format=latex metrics=map,ndcg@100",
        "hashbench table out=sweep format=csv > results.csv", "hashbench table out=sweep ci=true"])


def _compare_help() -> str:
    from hashbench.config import COMPARE_WORDS

    return _keys_help(COMPARE_WORDS, [
        "hashbench compare out=sweep methods=dsrh,triplet metric=ndcg@100",
        "hashbench compare out=sweep methods=dsrh,dpsh metric=map bits=32 resamples=10000"])


def _plot_help() -> str:
    from hashbench.config import PLOT_WORDS

    return _keys_help(PLOT_WORDS, [
        "hashbench plot out=sweep", "hashbench plot out=sweep to=paper/figures methods=dsrh,dpsh ks=10,100,1000"])


def _report_help() -> str:
    from hashbench.config import REPORT_WORDS

    return _keys_help(REPORT_WORDS, [
        "hashbench report out=sweep", "hashbench report out=sweep to=paper/report.html queries=3,17,42 topk=10",
        "hashbench report out=sweep bits=32 methods=dsrh,dpsh,random"])


def _status_help() -> str:
    from hashbench.config import STATUS_WORDS

    return _keys_help(STATUS_WORDS, ["hashbench status out=sweep", "hashbench status out=sweep all=true"])


def _plugins(names) -> None:
    from hashbench.plugins import import_plugin

    for plugin in names or []:
        import_plugin(str(plugin))


def cmd_run(args) -> int:
    from hashbench.config import RUN_WORDS, build_run_config, parse_words
    from hashbench.plugins import load_entry_points
    from hashbench.runner import Runner

    words = parse_words(args.words, RUN_WORDS)
    load_entry_points()
    _plugins(words.get("plugins"))
    run = build_run_config(words, import_plugins=_plugins)  # every check before any process starts
    if run.cfg["launcher"] == "submitit":
        from hashbench.submit import submit

        return submit(run, args.words)
    if run.cfg["workers"] > 1:
        return _run_workers(run, args.words)
    runner = Runner(run)
    try:
        runner.run()
    finally:
        runner.world.close()
    return 0


def _run_workers(run, words: list[str]) -> int:
    """``workers=N``: this process and N-1 started ones, then the tables of what they recorded."""
    import traceback

    from hashbench.runner import Runner
    from hashbench.stored import new_run_id
    from hashbench.workers import launch

    n, out = run.cfg["workers"], run.cfg["out"]
    run_id = new_run_id()
    print(f"hashbench: {n} workers on out={out} (run {run_id}); hashbench status out={out} shows their runs",
          flush=True)

    def here(stream) -> int:
        runner = Runner(run, stream=stream)
        try:
            runner.run()
        except HashbenchError as e:
            print(f"hashbench: error: {e}", file=stream)
            return 2
        except Exception:
            traceback.print_exc(file=stream)
            return 1
        finally:
            runner.world.close()
        return 0

    codes = launch(words, n, run_id, device=run.cfg["device"], here=here)
    runner = Runner(run)
    runner.run_id = run_id
    runner.print_tables(runner.plan())
    failed = [f"worker {i} (exit status {c})" for i, c in enumerate(codes) if c != 0]
    if failed:
        raise HashbenchError(f"{', '.join(failed)} stopped with an error (its output above); the runs recorded are "
                             "kept: the same command resumes the rest")
    return 0


def cmd_status(args) -> int:
    from hashbench.config import STATUS_WORDS, parse_words
    from hashbench.status import status

    sys.stdout.write(status(parse_words(args.words, STATUS_WORDS)))
    return 0


def cmd_eval(args) -> int:
    from hashbench.config import EVAL_WORDS, parse_words
    from hashbench.plugins import load_entry_points
    from hashbench.stored import evaluate_stored

    words = parse_words(args.words, EVAL_WORDS)
    load_entry_points()
    _plugins(words.get("plugins"))
    evaluate_stored(words)
    return 0


def cmd_table(args) -> int:
    from hashbench.config import TABLE_WORDS, parse_words
    from hashbench.stored import table

    words = parse_words(args.words, TABLE_WORDS)
    sys.stdout.write(table(words))
    return 0


def cmd_compare(args) -> int:
    from hashbench.config import COMPARE_WORDS, parse_words
    from hashbench.stored import compare

    words = parse_words(args.words, COMPARE_WORDS)
    sys.stdout.write(compare(words))
    return 0


def cmd_plot(args) -> int:
    from hashbench.config import PLOT_WORDS, parse_words
    from hashbench.plots import plot

    words = parse_words(args.words, PLOT_WORDS)
    paths = plot(words, stream=sys.stderr)
    where = sorted({str(p.parent) for p in paths})
    print(f"wrote {len(paths)} files to {', '.join(where) or '-'}:")
    for p in paths:
        print(f"  {p.name}")
    return 0


def cmd_report(args) -> int:
    from hashbench.config import REPORT_WORDS, parse_words
    from hashbench.plugins import load_entry_points
    from hashbench.report import report

    words = parse_words(args.words, REPORT_WORDS)
    load_entry_points()
    _plugins(words.get("plugins"))
    path, n = report(words, stream=sys.stderr)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB): {n['sections']} sections, {n['tables']} tables, "
          f"{n['figures']} figures, {n['thumbnails']} thumbnails")
    return 0


def cmd_list(args) -> int:
    from hashbench.plugins import load_entry_points
    from hashbench.registry import REGISTRIES, entries, summary

    load_entry_points()
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        if len(kinds) > 1:
            print(f"{kind}:")
        indent = "  " if len(kinds) > 1 else ""
        found = entries(REGISTRIES[kind])
        if kind == "methods":
            _list_methods(found, summary, indent)
        else:
            for name, obj in found.items():
                print(f"  {name:<16} {summary(obj)}")
        if kind in ("methods", "datasets"):
            _list_configured(kind, found, indent)
    return 0


def _list_configured(kind: str, found: dict, indent: str) -> None:
    """The names ``configs/<kind>/NAME.py`` adds to the registered ones (a registered method or
    dataset with settings: ``dsrh_as_released``, ``coco``), each with its file's first comment line."""
    from hashbench.config import CONFIG_ROOT

    configured = sorted(p for p in (CONFIG_ROOT / kind).glob("*.py")
                        if not p.stem.startswith("_") and p.stem not in found)
    if configured:
        what = "method" if kind == "methods" else "dataset"
        print(f"{indent}configured (a registered {what} with settings, configs/{kind}/NAME.py):")
        width = max(16, *(len(p.stem) for p in configured))
        for path in configured:
            first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
            print(f"{indent}  {path.stem:<{width}} {first}")


def _list_methods(found: dict, summary, indent: str) -> None:
    """Methods grouped by family (pairwise, triplet, pointwise, listwise, classic, baseline), one line each."""
    from hashbench.method import FAMILIES, family

    groups: dict[str, list[str]] = {}
    for name, obj in found.items():
        groups.setdefault(family(obj), []).append(name)
    for fam in [*FAMILIES, *sorted(set(groups) - set(FAMILIES))]:
        if fam in groups:
            print(f"{indent}{fam}:")
            for name in groups[fam]:
                print(f"{indent}  {name:<16} {summary(found[name])}")


def parser() -> argparse.ArgumentParser:
    from hashbench.registry import REGISTRIES

    p = argparse.ArgumentParser(
        prog="hashbench", description="Benchmark toolkit for learning to hash.",
        epilog="A sweep: hashbench run out=sweep methods=dsrh,lsh seeds=0,1,2 (rerun to resume); then "
               "hashbench eval out=sweep metrics=p@10 (no retraining), hashbench table out=sweep format=latex, "
               "hashbench plot out=sweep, hashbench report out=sweep. `hashbench COMMAND --help` lists each command's keys.")
    sub = p.add_subparsers(dest="command", metavar="{run,status,eval,table,compare,plot,report,list,data}")

    def words_command(name, func, epilog, **text):
        """A command that takes key=value words; its --help ends with the words it accepts."""
        cmd = sub.add_parser(name, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, **text)
        cmd.add_argument("words", nargs="*", metavar="key=value")
        cmd.set_defaults(func=func)

    words_command("run", cmd_run, _run_help(),
                  help="train/fit methods, evaluate by Hamming ranking, print tables",
                  description="Train or fit each method at each code length and seed, evaluate, append to "
                              "out/results.jsonl and print one table per metric. Runs already in "
                              "out/results.jsonl are skipped (force=true recomputes); an interrupted sweep "
                              "resumes where it stopped. Several processes may run the same sweep into one out= "
                              "(workers=N here, launcher=submitit on a cluster, or by hand): each run is claimed "
                              "before it is computed, so none is computed twice, and the runs of a worker that "
                              "dies are taken over (hashbench status out=DIR shows who does what).")
    words_command("status", cmd_status, _status_help(),
                  help="where a sweep stands: done, running (by which worker), stalled, failed and pending runs",
                  description="Show the runs of the latest sweep planned into out= (or run=ID): how many are done, "
                              "and each one running (its worker and heartbeat), stalled (a claim whose worker "
                              "stopped beating: the next worker takes it over), failed (the error) or pending. "
                              "Reads the folder only: works while the workers run, here or on a cluster.")
    words_command("eval", cmd_eval, _eval_help(),
                  help="re-evaluate the saved codes of earlier runs (other metrics or conventions), no retraining",
                  description="Score the saved codes (out/codes/) of stored runs again: metrics not yet stored, or "
                              "other conventions (eval.ties=...); append the records to out/results.jsonl and "
                              "print the tables.")
    words_command("table", cmd_table, _table_help(),
                  help="regenerate the paper-style tables from out/results.jsonl",
                  description="Print the tables of every stored run (methods x bits per metric, mean ± std over "
                              "seeds or, ci=true, a bootstrap interval; in bold the best and every method not "
                              "significantly worse than it; conventions in a footer), one section per dataset.")
    words_command("compare", cmd_compare, _compare_help(),
                  help="paired comparison of two methods on one metric: difference, interval, p-value",
                  description="A minus B on one metric at each code length, paired over the same seeds and "
                              "queries: the mean difference, its 95% two-stage bootstrap interval and a two-sided "
                              "bootstrap p-value.")
    words_command("plot", cmd_plot, _plot_help(),
                  help="write PNG figures: metrics vs code length, NDCG@k / P@k curves, precision-recall by "
                       "Hamming radius (needs hashbench[plot])",
                  description="Draw the figures of the stored runs into OUT/figures/ (matplotlib: pip install "
                              "'hashbench[plot]').")
    words_command("report", cmd_report, _report_help(),
                  help="write one self-contained report.html: tables with intervals, figures, conventions, "
                       "settings, retrieval examples",
                  description="Write an HTML page of the stored runs (images embedded): per dataset the tables "
                              "(bootstrap intervals where per-query scores are stored), the figures of hashbench "
                              "plot (when matplotlib is installed), the evaluation conventions, the settings that "
                              "differ between runs, and for a few queries each method's top-k retrieved database "
                              "items with Hamming distance and shared labels.")
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
        print("hashbench: interrupted; finished runs are in results.jsonl: the same command resumes",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
