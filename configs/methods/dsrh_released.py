# DSRH trained on the released code's triplets (dsrh.md, Sampling 2): per anchor, partners drawn
# from the whole training set at chosen levels; rare labels' anchors repeated. batch_size counts anchors.
method = dict(type="dsrh", sampler="released")
