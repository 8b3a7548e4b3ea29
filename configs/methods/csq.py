# CSQ (Yuan et al., CVPR 2020, arXiv 1908.00347). Defaults in methods/csq.py: Hadamard hash centres
# (random balanced ones when K is not a power of 2 or 2K < C), multi-label centre = sign of the sum,
# BCE of (h+1)/2 to (c+1)/2 + 1e-4 * log cosh(|h| - 1) on tanh codes, hash layer lr x20 (released code).
method = dict(type="csq")
