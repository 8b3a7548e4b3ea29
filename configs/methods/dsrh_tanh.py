# DSRH ablation (Zhao et al., CVPR 2015): tanh relaxation b = tanh(z) instead of 2 sigmoid(z) - 1.
method = dict(type="dsrh", relaxation="tanh")
