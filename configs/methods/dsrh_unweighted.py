# DSRH ablation (Zhao et al., CVPR 2015): w = 1, a plain triplet ranking loss on graded relevance.
method = dict(type="dsrh", weighting="none")
