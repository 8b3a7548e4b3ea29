# DSRH ablation: binary relevance (r clipped to {0, 1}), NDCG weights kept.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_binary")
