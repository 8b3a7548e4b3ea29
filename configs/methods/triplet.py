# Triplet ranking hashing (Lai, Pan, Liu, Yan, CVPR 2015), as DSRH's loss with weighting="none" and
# similarity="binary"; margin rule, balance term, bypass and learning rates as in dsrh.
method = dict(type="triplet")
