# DSRH ablation (Zhao et al., CVPR 2015): no bypass connection, the hash layer reads the final feature only.
method = dict(type="dsrh", bypass=False)
