# NUS-WIDE-21 (21 concepts) from the published list files; mAP over the top 5,000.
# DeepHash-pytorch's nuswide_21 lists (21 label columns), rather than the raw distribution (`nuswide21`).
# hashbench run dataset=nuswide21_lists data_root=DIR; hashbench data verify dataset=nuswide21_lists ...
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=21)
eval = dict(metrics=["map@5000", "map", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2"],
            tables=["map@5000", "ndcg@100"])
