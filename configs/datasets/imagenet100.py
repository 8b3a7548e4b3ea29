# ImageNet-100 from the list files peers publish (HashNet / DeepHash-pytorch format: 100 classes,
# one label per image): hashbench run dataset=imagenet100 data_root=DIR. Scored by mAP over the
# top 1,000, as those tables are.
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=100, single_label=True)
eval = dict(metrics=["map@1000", "map", "p@100", "p@h2"], tables=["map@1000"])
