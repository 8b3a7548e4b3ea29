# DSDH (Li, Sun, He, Tan, NeurIPS 2017). Defaults in methods/dsdh.py are the paper's: DPSH's likelihood over
# all training pairs + eta ||B - U||^2, mu = 1, nu = 0.1, eta = 55, W and B (DCC, at most 10 sweeps) updated
# once per epoch. `method.update=batch`: the released code's per-batch W and B.
method = dict(type="dsdh")
