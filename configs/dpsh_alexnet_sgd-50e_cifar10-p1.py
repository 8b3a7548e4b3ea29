# The CIFAR-10 setting of DPSH and the papers that compare with it: protocol p1 (1,000 queries,
# 5,000 training images, database = the other 59,000), mAP over the whole database, 12 to 48 bits,
# an ImageNet-pretrained AlexNet (DPSH itself used CNN-F, not in torchvision):
#   hashbench run config=configs/dpsh_alexnet_sgd-50e_cifar10-p1.py data_root=/data/cifar10 \
#       backbone.checkpoint=/weights/alexnet-owt-7be5be79.pth
# The schedule (SGD, 50 epochs, base lr 1e-4) is hashbench's sgd_paper schedule, not DPSH's own.
_base_ = ["_base_/default_runtime.py", "_base_/schedules/sgd_paper.py", "_base_/backbones/alexnet.py"]
dataset = dict(type="cifar10", protocol="p1")  # data_root=DIR on the command line
eval = dict(tables=["map", "p@h2"])
methods = ["dpsh"]
bits = [12, 24, 32, 48]
