"""Speed and memory of ``hashbench.metrics.evaluate`` at NUS-WIDE scale, against two references.

Synthetic data shaped like NUS-WIDE: 2,100 queries x 193,000 database items, 64-bit codes,
81 concepts (1 + Poisson(1.4) labels per item, Zipf-like concept frequencies; codes are the sign
of the sum of per-concept prototypes with 3% of bits flipped, so that neighbours share labels and
distances tie the way trained codes do). One ``evaluate`` call computes map@5000, wmap@5000,
ndcg@100, acg@100 and p@h2 under the default ``expected`` tie policy. In the same run:

(a) the straightforward per-query approach of peer toolkits (float matmul for distances and
    relevance, full argsort, cumulative sums), computing mAP@5000 alone;
(b) faiss ``IndexBinaryFlat`` top-5000 search, when faiss-cpu is installed (extra ``faiss``);
(c) the bare popcount of the full distance matrix (numpy ``bitwise_count`` on packed words) and
    the compiled popcount + per-query histogram pass alone.

A cross-check runs ``ties="index"`` on the first queries against (a) with a stable argsort:
they must agree to rounding. Peak memory: tracemalloc peak of one ``evaluate`` call (numpy
allocations) and the process's maximum resident set size.

    python benchmarks/eval_speed.py                 # full size
    python benchmarks/eval_speed.py --device cuda   # the same call on the GPU (torch tensors)
    python benchmarks/eval_speed.py --queries 300 --database 20000   # a quick look
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

import numpy as np

METRICS = ["map@5000", "wmap@5000", "ndcg@100", "acg@100", "p@h2"]


def synthetic(n_query, n_db, bits, classes, seed=0, flip=0.03, chunk=20000):
    """Codes (n, bits) uint8 in {0, 1} and multi-hot labels (n, classes) uint8, queries first.

    Labels: 1 + Poisson(1.4) concepts per item (at most 6), drawn with Zipf-like frequencies.
    Codes: the sign of the sum of the item's concept prototypes, each bit flipped with
    probability ``flip``, so items with equal labels lie a few bits apart. Made in row chunks to
    keep the generator's own memory small.
    """
    rng = np.random.default_rng(seed)
    n = n_query + n_db
    log_freq = -0.8 * np.log(np.arange(1, classes + 1))
    prototypes = rng.standard_normal((classes, bits)).astype(np.float32)
    codes = np.empty((n, bits), np.uint8)
    labels = np.zeros((n, classes), np.uint8)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        n_labels = np.minimum(1 + rng.poisson(1.4, m), 6)
        keys = log_freq + rng.gumbel(size=(m, classes))  # Gumbel top-k = weighted draws
        order = np.argsort(-keys, axis=1)
        take = np.arange(classes)[None, :] < n_labels[:, None]
        block = labels[s:s + m]
        block[np.repeat(np.arange(m), n_labels), order[take]] = 1
        signal = block.astype(np.float32) @ prototypes
        codes[s:s + m] = (signal > 0) ^ (rng.random((m, bits)) < flip)
    return codes[:n_query], codes[n_query:], labels[:n_query], labels[n_query:]


def straightforward_map(q_codes, db_codes, q_labels, db_labels, topk, kind="quicksort"):
    """mAP@topk, one query at a time: float matmul, full argsort, cumulative sums."""
    bits = q_codes.shape[1]
    qb = q_codes.astype(np.float32) * 2 - 1
    db = db_codes.astype(np.float32) * 2 - 1
    ql, dl = q_labels.astype(np.float32), db_labels.astype(np.float32)
    total = 0.0
    for i in range(qb.shape[0]):
        relevant = (dl @ ql[i] > 0).astype(np.float32)
        hamming = 0.5 * (bits - db @ qb[i])
        ranked = relevant[np.argsort(hamming, kind=kind)][:topk]
        hits = ranked.sum()
        if hits == 0:
            continue
        positions = np.flatnonzero(ranked) + 1.0
        total += np.mean(np.arange(1, hits + 1) / positions)
    return total / qb.shape[0]


def bare_popcount(q_words, d_words, chunk=64):
    """Popcount of the full (nq, N) distance matrix with numpy, chunk by chunk (not stored)."""
    for s in range(0, q_words.shape[0], chunk):
        x = np.bitwise_xor(q_words[s:s + chunk, None, :], d_words[None, :, :])
        np.bitwise_count(x, out=x).sum(axis=2, dtype=np.uint16)


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.mean(times)), out


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2100)
    ap.add_argument("--database", type=int, default=193000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--classes", type=int, default=81)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the torch GPU path")
    ap.add_argument("--check-queries", type=int, default=200,
                    help="queries for the ties='index' cross-check against (a)")
    ap.add_argument("--skip-baseline", action="store_true", help="do not run (a)")
    args = ap.parse_args(argv)

    from hashbench.metrics import evaluate, hamming_histograms, pack_bits

    qc, dc, ql, dl = synthetic(args.queries, args.database, args.bits, args.classes)
    print(f"data: {args.queries} queries x {args.database} database items, {args.bits} bits, "
          f"{args.classes} labels; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    inputs = (qc, dc, ql, dl)
    if args.device != "cpu":
        import torch

        inputs = tuple(torch.as_tensor(x).to(args.device) for x in inputs)

        def sync():
            torch.cuda.synchronize()
    else:
        def sync():
            pass

    # warm-up: compiles (or loads cached) kernels
    evaluate(inputs[0][:8], inputs[1], inputs[2][:8], inputs[3], metrics=METRICS)
    rss_before = max_rss_mib()

    def ours():
        out = evaluate(*inputs, metrics=METRICS, details=True)
        sync()
        return out

    best, mean, (scores, info) = timed(ours, args.repeat)
    print(f"hashbench evaluate ({', '.join(METRICS)}; ties=expected; backend {info['backend']}): "
          f"best {best:.3f} s, mean {mean:.3f} s over {args.repeat}")
    print("  scores: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
          + f"; queries without relevant: {info['queries_without_relevant']}; distinct database "
          f"label vectors: {info.get('db_label_patterns')}")
    tracemalloc.start()
    ours()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_after = max_rss_mib()
    print(f"  peak memory: tracemalloc {peak:.0f} MiB during evaluate; process max RSS "
          f"{rss_after:.0f} MiB (before the timed calls: {rss_before:.0f} MiB)")

    qw, dw = pack_bits(qc.astype(bool)), pack_bits(dc.astype(bool))
    t_bare, _, _ = timed(lambda: bare_popcount(qw, dw), max(1, args.repeat - 1))
    print(f"(c) bare popcount of the full distance matrix (numpy bitwise_count, 1 thread): "
          f"{t_bare:.3f} s; evaluate takes {best / t_bare:.2f}x that")
    t_hist, _, _ = timed(lambda: hamming_histograms(qw, dw, args.bits), args.repeat)
    print(f"(c) compiled popcount + per-query histograms alone ({os.cpu_count()} threads): "
          f"{t_hist:.3f} s")

    try:
        import faiss
    except ImportError:
        print("(b) faiss not installed: pip install 'hashbench[faiss]' to compare")
    else:
        index = faiss.IndexBinaryFlat(args.bits)
        index.add(np.packbits(dc, axis=1))
        qpacked = np.packbits(qc, axis=1)
        k = min(5000, args.database)
        t_faiss, _, _ = timed(lambda: index.search(qpacked, k), max(1, args.repeat - 1))
        print(f"(b) faiss IndexBinaryFlat top-{k} search alone ({faiss.omp_get_max_threads()} "
              f"threads): {t_faiss:.3f} s; evaluate is {t_faiss / best:.1f}x faster and "
              "computes the metrics too")

    nc = min(args.check_queries, args.queries)
    ref = straightforward_map(qc[:nc], dc, ql[:nc], dl, 5000, kind="stable")
    mine = evaluate(qc[:nc], dc, ql[:nc], dl, metrics=["map@5000"], ties="index")["map@5000"]
    print(f"cross-check on {nc} queries, ties='index' vs (a) with a stable argsort: "
          f"{mine:.10f} vs {ref:.10f} (difference {abs(mine - ref):.1e})")

    speedup = None
    if not args.skip_baseline:
        t0 = time.perf_counter()
        base = straightforward_map(qc, dc, ql, dl, 5000)
        t_base = time.perf_counter() - t0
        speedup = t_base / best
        print(f"(a) straightforward per-query mAP@5000 alone: {t_base:.2f} s "
              f"({1000 * t_base / args.queries:.2f} ms/query; mAP@5000 = {base:.4f} with "
              f"quicksort ties); evaluate is {speedup:.1f}x faster computing 5 metrics")
    print(f"process max RSS at the end (after (a) and (b)): {max_rss_mib():.0f} MiB")
    verdict = []
    if speedup is not None:
        verdict.append(f">= 20x faster than (a): {'yes' if speedup >= 20 else 'NO'} "
                       f"({speedup:.1f}x)")
    verdict.append(f"peak memory <= 2 GiB: {'yes' if rss_after <= 2048 else 'NO'} "
                   f"({rss_after:.0f} MiB RSS)")
    verdict.append(f"within 3x of the bare popcount: {'yes' if best <= 3 * t_bare else 'NO'} "
                   f"({best / t_bare:.2f}x)")
    print("targets: " + "; ".join(verdict))


if __name__ == "__main__":
    main()
