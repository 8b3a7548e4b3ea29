# Embedded default: canvases of 1-4 real handwritten digits (scikit-learn's bundled digits).
dataset = dict(type="multidigits", n_train=3000, n_query=500, n_database=3000, canvas_size=32, seed=0)
