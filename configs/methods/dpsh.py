# DPSH (Li, Wang, Kang, IJCAI 2016). Defaults in methods/dpsh.py are the paper's: pairwise likelihood
# on in-batch pairs with binary similarity, eta = 10, linear (identity) codes, no bypass.
method = dict(type="dpsh")
