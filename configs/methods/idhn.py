# IDHN (Zhang, Zou, Lin, Chen, Wang, IEEE TMM 2019). Defaults in methods/idhn.py: label-cosine similarity,
# cross-entropy (beta/K-scaled inner product, beta = 5) on hard pairs, gamma = 0.1 squared error on soft
# pairs, alpha = 0.1 L1 pull to ±1, softsign codes (authors' TensorFlow release).
method = dict(type="idhn")
