# DSRH (Zhao et al., CVPR 2015). Defaults in methods/dsrh.py are the paper's values:
# margin 5 per 64 bits, alpha 1, NDCG weights normalised by the anchor's ideal DCG, sigmoid
# relaxation, bypass connection, hash-layer lr x10 (x2.5 lower branch, x20 bias), dropped x10 halfway.
method = dict(type="dsrh")
