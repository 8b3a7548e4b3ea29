# DSRH's released optimiser for a pretrained network: SGD, momentum 0.9, weight decay 5e-4, base
# learning rate 1e-4 (the hash layer's multipliers come from the method), batch 128 (triplet rows
# in the release, with method.rows=true). 50 epochs is hashbench's choice: the release gives none.
train = dict(epochs=50, batch_size=128, optimizer="sgd", lr=1e-4, momentum=0.9, weight_decay=5e-4,
             precision="fp32", workers=4, encode_batch_size=256)
