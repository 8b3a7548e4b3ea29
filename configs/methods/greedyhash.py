# GreedyHash (Su, Zhang, Han, Tian, NeurIPS 2018). Defaults in methods/greedyhash.py: sign forward with a
# straight-through gradient, a bias-free linear classifier on the codes (softmax, or per-label sigmoid
# for multi-label data), cubic penalty | |h| - 1 |^3 with alpha = 0.1 (released CIFAR-10 code), one lr.
method = dict(type="greedyhash")
