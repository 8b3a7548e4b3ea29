# DSRH ablation: w = 1, a plain triplet ranking loss on graded relevance.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_unweighted")
