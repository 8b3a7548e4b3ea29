# The run `hashbench run` starts from: embedded data, small backbone, from-scratch schedule.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/multidigits.py",
    "_base_/backbones/test_resnet.py",
    "_base_/schedules/adamw_20e.py",
]
methods = ["dsrh"]
