# SDH: Shen, Shen, Liu & Shen, "Supervised Discrete Hashing", CVPR 2015 (classic, on fixed features).
# Defaults: 1000 RBF anchors, lambda = 1, nu = 1e-5, 5 iterations (paper); F-step ridge 1e-2, <= 10 DCC
# sweeps, tol 1e-5 (released SDH.m / demo_SDH.m); bandwidth = RMS distance to the anchors (demo's comment).
method = dict(type="sdh")
