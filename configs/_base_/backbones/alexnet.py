# torchvision's AlexNet cut at fc7 (the published tables' backbone); ImageNet weights from a local
# file (nothing is downloaded): backbone.checkpoint=/path/to/alexnet-owt-7be5be79.pth
backbone = dict(type="torchvision", name="alexnet", checkpoint=None)
