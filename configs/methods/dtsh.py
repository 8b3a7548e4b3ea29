# DTSH (Wang, Shi, Kitani, ACCV 2016). Defaults in methods/dtsh.py: triplet likelihood on in-batch
# triplets (binary similarity), margin alpha = K/2, lambda = 1, linear (identity) codes, no bypass.
method = dict(type="dtsh")
