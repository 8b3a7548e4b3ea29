# DSRH as the authors' released code trains it: every departure of `dsrh` switched back.
# (zhaofang0627/cuda-convnet-for-hashing, read in ../shared/docs/dsrh.md):
# - triplets from the whole training set (sampler="released"), the anchor counting in its own
#   relevance (self_pair), batches of triplet rows walked in order (rows; train.batch_size counts
#   rows, 128 in the release);
# - the balance term scaled per row by its triplet weight and by 1/rows (balance="released");
# - margin 5 at every code length (the release hard-codes it; it only ran 64 bits);
# - dropout 0.5 on fc7 before the hash layer, hash layer N(0, 0.01^2) with bias 1;
# - learning rates: hash layer x10 (fc7 branch), x2.5 (fc6 branch), x20 (bias), dropping x10
#   halfway; every other bias x2; no weight decay on biases.
# - a random horizontal flip of every training image (train.augment=flip; jpeg.cpp in the release).
method = dict(
    type="dsrh", sampler="released", self_pair=True, rows=True, balance="released", margin=5.0,
    dropout=0.5, head_init=dict(std=0.01, bias=1.0), head_lr_drop=0.5,
    lr_mult={"head.final.weight": 10.0, "head.lower": 2.5,
             "head.final.bias": dict(lr_mult=20.0, decay_mult=0.0),
             ".bias": dict(lr_mult=2.0, decay_mult=0.0)},
)
train = dict(augment="flip")
