# TALR (He, Cakir, Bargal, Sclaroff; CVPR 2018): 1 - relaxed tie-aware AP (objective="ap") or
# NDCG (objective="ndcg") of each batch item's Hamming ranking of the others, summed over queries.
# Defaults (paper; kunhe/TALR get_opts.m): exact tie-aware form, K bins, codes 2*sigmoid(z) - 1.
method = dict(type="talr")
