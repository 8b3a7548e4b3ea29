# DHN (Zhu, Long, Wang, Cao, AAAI 2016). Defaults in methods/dhn.py: pairwise cross-entropy on in-batch
# pairs of tanh codes, sigmoid(<z_i, z_j>) (alpha = 1), log-cosh quantisation with lambda = 0.3 (the
# released Caffe prototxt's q_gamma), hash layer lr x10. `method.self_pairs=true`: the released layer's B x B pairs.
method = dict(type="dhn")
