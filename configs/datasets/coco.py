# MS-COCO (80 labels) from the published list files; mAP over the top 5,000.
# The HashNet / DeepHash-pytorch format: train.txt, test.txt (the queries), database.txt, 80 label
# columns. hashbench run dataset=coco data_root=DIR, DIR being the folder the lists' paths lead into
# (a machine prefix on them is found and stripped); hashbench data verify dataset=coco data_root=DIR.
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=80)
eval = dict(metrics=["map@5000", "map", "ndcg@100", "acg@100", "p@100", "p@h2"], tables=["map@5000", "ndcg@100"])
