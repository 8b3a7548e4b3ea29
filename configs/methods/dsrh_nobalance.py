# DSRH ablation (Zhao et al., CVPR 2015): no mean-zero (bit balance) term, alpha = 0.
method = dict(type="dsrh", alpha=0)
