# DSRH ablation: tanh relaxation b = tanh(z) instead of 2 sigmoid(z) - 1.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_tanh")
