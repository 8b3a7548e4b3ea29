# A complete recipe: `hashbench run config=configs/dsrh_test-resnet_adamw-20e_multidigits.py`
_base_ = ["default.py", "methods/dsrh.py"]
methods = ["dsrh"]
