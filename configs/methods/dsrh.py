# DSRH (Zhao et al., CVPR 2015): the paper's loss on all in-batch triplets (methods/dsrh.py).
# hashbench's own choices: margin 5 per 64 bits (the release: 5 at its only length, 64), NDCG
# weights normalised by the ideal DCG of the anchor's batch items, alpha 1 on the batch mean (far
# stronger than the release's scaling). Sigmoid relaxation, bypass connection and the release's
# hash-layer rates (x10 fc7 branch, x2.5 lower branch, x20 bias, dropped x10 halfway).
# configs/methods/dsrh_as_released.py switches to the released code's training.
method = dict(type="dsrh")
