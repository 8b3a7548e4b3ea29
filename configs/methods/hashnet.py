# HashNet (Cao, Long, Wang, Yu, ICCV 2017). Defaults in methods/hashnet.py: class-balanced weighted
# pairwise cross-entropy, alpha = 10/K, c_ij = label cosine, tanh(beta z) with beta = (1 + 0.005 t)^0.5
# on a nominal 10,000-iteration clock, hash layer lr x10 (released code).
method = dict(type="hashnet")
