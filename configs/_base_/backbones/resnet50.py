# ImageNet ResNet-50; weights from a local file (nothing is downloaded):
#   backbone.checkpoint=/path/to/resnet50.a1_in1k.safetensors
backbone = dict(type="timm", name="resnet50", pretrained=True, checkpoint=None, lower_stage=-2)
