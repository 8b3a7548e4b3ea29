# DFH (Li, Pei, Zha, van Gemert, BMVC 2019). Defaults in methods/dfh.py: margin pairwise likelihood (m = 3)
# against a bank of the training set, B-step b = sgn(u + mu C ybar) (mu = 1), discrete C-step (nu = 1),
# quantisation eta = 0.5, linear outputs (released code; ybar = labels / label count for multi-label).
method = dict(type="dfh")
