_base_ = ["../_base_/datasets/multidigits.py"]
