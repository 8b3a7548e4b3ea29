# MIRFLICKR-25K (38 label columns) from the published list files; mAP over the whole database.
# DeepHash-pytorch's mirflickr lists: the 24 potential and 14 strict `_r1` annotation files in the
# filesystem order its preparation script met them, not `mirflickr25k`'s fixed 24.
# hashbench run dataset=mirflickr25k_lists data_root=DIR; hashbench data verify dataset=mirflickr25k_lists ...
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=38)
eval = dict(metrics=["map", "map@1000", "ndcg@100", "acg@100", "p@100", "p@h2"], tables=["map", "ndcg@100"])
