# DSRH ablation (Zhao et al., CVPR 2015): binary relevance (r clipped to {0, 1}), NDCG weights kept.
method = dict(type="dsrh", similarity="binary")
