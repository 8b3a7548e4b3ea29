# ImageNet-100 (100 classes, one each) from the published list files; mAP over the top 1,000.
# The HashNet / DeepHash-pytorch format: one label per image (checked).
# hashbench run dataset=imagenet100 data_root=DIR; hashbench data verify dataset=imagenet100 data_root=DIR.
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=100, single_label=True)
eval = dict(metrics=["map@1000", "map", "p@100", "p@h2"], tables=["map@1000"])
