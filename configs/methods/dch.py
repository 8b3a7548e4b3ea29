# DCH (Cao, Long, Liu, Wang, CVPR 2018). Defaults in methods/dch.py: class-balanced Cauchy cross-entropy
# on d = K/2 (1 - cos), gamma = 20 (released script), Cauchy quantisation with lambda = 0.1, tanh codes,
# hash layer lr x10 (released code).
method = dict(type="dch")
