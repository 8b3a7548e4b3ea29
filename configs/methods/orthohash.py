# OrthoHash (Hoe, Ng, Zhang, Chan, Song, Xiang, NeurIPS 2021). Defaults in methods/orthohash.py: softmax CE on
# s * (cos(BN codes, Bernoulli ±1 codewords) - m), s = sqrt(K) (paper; the code's 8: method.scale=8), m = 0.2,
# multi-label targets y / |y|, no quantisation term, hash layer lr x10.
method = dict(type="orthohash")
