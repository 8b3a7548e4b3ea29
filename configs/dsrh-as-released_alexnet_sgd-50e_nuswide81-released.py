# DSRH as released, on NUS-WIDE-81 with the released evaluation protocol and AlexNet:
#   hashbench run config=configs/dsrh-as-released_alexnet_sgd-50e_nuswide81-released.py \
#       data_root=/data/nuswide backbone.checkpoint=/weights/alexnet-owt-7be5be79.pth
# The release's network is AlexNet-like (cuda-convnet2's one-GPU layout: 64, 192, 384, 256, 256
# filters), which is torchvision's alexnet; ImageNet weights come from a local file. Its epoch
# count is not in the repository: 50 is hashbench's choice (schedules/sgd_paper.py).
_base_ = ["_base_/default_runtime.py", "_base_/schedules/sgd_paper.py"]
dataset = dict(type="nuswide81", protocol="released")  # data_root=DIR on the command line
backbone = dict(type="torchvision", name="alexnet", checkpoint=None)
methods = ["dsrh_as_released"]
bits = [64]
