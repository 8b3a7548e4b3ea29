# MS-COCO from the published list files with an ImageNet ResNet-50, HashNet's benchmark in its
# modern form (HashNet itself used AlexNet): mAP over the top 5,000, 16 to 64 bits.
#   hashbench run config=configs/hashnet_resnet50_sgd-50e_coco.py data_root=/data/coco \
#       backbone.checkpoint=/weights/resnet50.a1_in1k.safetensors
# The schedule is hashbench's sgd_paper schedule (SGD, 50 epochs, base lr 1e-4), not HashNet's own.
_base_ = ["_base_/default_runtime.py", "_base_/schedules/sgd_paper.py", "_base_/backbones/resnet50.py"]
# configs/datasets/coco.py's preset (data_root=DIR on the command line)
dataset = dict(type="listfile", train="train.txt", query="test.txt", database="database.txt", strip_prefix="auto",
               n_classes=80)
eval = dict(metrics=["map@5000", "map", "ndcg@100", "acg@100", "p@100", "p@h2"], tables=["map@5000", "ndcg@100"])
methods = ["hashnet"]
bits = [16, 32, 48, 64]
