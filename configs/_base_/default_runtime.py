# What every run shares. Leaf configs and `key=value` words override any of it.
bits = [16, 32, 48, 64]
seeds = [0]
device = "auto"  # auto: CUDA when present, else CPU
out = "out"
plugins = []  # modules to import before building (plugin methods, datasets, ...)
eval = dict(
    metrics=["map", "map@1000", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2"],
    tables=["map", "wmap@5000", "ndcg@100", "acg@100"],  # one printed table per metric
    ties="expected",
    ap_denominator="retrieved",
    no_relevant="zero",
)
# Classic methods (lsh, itq, ...) hash fixed features: those of the frozen backbone, or raw pixels.
classic = dict(features="backbone")
