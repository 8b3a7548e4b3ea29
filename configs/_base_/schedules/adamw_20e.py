# From-scratch schedule of the embedded default: AdamW, 20 epochs, batch 64. The per-group
# learning-rate multipliers (hash layer 10x, ...) come from the method.
train = dict(epochs=20, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=5e-4,
             precision="fp32", workers=0, encode_batch_size=256)
