# ADSH (Jiang, Li, AAAI 2018). Defaults in methods/adsh.py: gamma = 200, m = 2000 sampled query points,
# 3 epochs per outer iteration, then the bit-wise discrete update of the database codes V (released code);
# S in {-1, +1} (paper; method.soft_constraint=true: the release's); database training items get their V rows.
method = dict(type="adsh")
