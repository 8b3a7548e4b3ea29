# DPSH (Li, Wang, Kang, IJCAI 2016). Defaults in methods/dpsh.py are the paper's: every sample paired
# with the whole training set (a bank of outputs), binary similarity, eta = 10, linear (identity)
# codes, no bypass. `method.pairs=batch` keeps only in-batch pairs (then lower eta, e.g. 0.1).
method = dict(type="dpsh")
