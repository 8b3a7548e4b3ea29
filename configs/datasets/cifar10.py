# CIFAR-10 from its distributed batches (hashbench run dataset=cifar10 data_root=DIR): protocol p1
# (100 queries and 500 training images per class; dataset.protocol=p2 for the 10,000 test queries
# against the 50,000 training images). The published tables report mAP over the whole database.
dataset = dict(type="cifar10", protocol="p1")
eval = dict(tables=["map", "p@h2"])
