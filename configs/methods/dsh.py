# DSH (Liu, Wang, Shan, Chen, CVPR 2016). Defaults in methods/dsh.py are the paper's: contrastive loss
# on all unique in-batch pairs, margin m = 2K, alpha = 0.01, real-valued (identity) outputs, no bypass.
method = dict(type="dsh")
