# timm's smallest ResNet (0.37 M parameters), trained from scratch: what fits the embedded
# default's 3-minute CPU budget. For real data use e.g. backbones/resnet50.py with local weights.
backbone = dict(type="timm", name="test_resnet", pretrained=False, checkpoint=None, lower_stage=-2)
