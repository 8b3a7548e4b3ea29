# DSRH ablation: no mean-zero (bit balance) term, alpha = 0.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_nobalance")
