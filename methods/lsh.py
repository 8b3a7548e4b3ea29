"""``lsh``: locality-sensitive hashing by signs of random Gaussian projections.

Reference: Charikar, "Similarity Estimation Techniques from Rounding Algorithms", STOC 2002
(the random-hyperplane hash of Goemans & Williamson).

Formula, with ``W`` (d, K) drawn once with i.i.d. N(0, 1) entries and ``mu`` the training mean
(``center=True``) or zero (``center=False``)::

    code(x) = 1[(x - mu) W > 0]

For one random hyperplane, P[h(x) != h(y)] = theta(x - mu, y - mu) / pi, the angle between the two
(centred) vectors divided by pi; the fraction of differing bits estimates it.

Centring: Charikar's hyperplanes pass through the origin (``center=False`` is exactly his hash on
the raw vectors). Feature vectors of images are often all non-negative (ReLU outputs), where
hyperplanes through the origin cut the data badly, and the comparisons in which LSH is a baseline
(e.g. Gong & Lazebnik 2011) apply it to zero-centred data; hashbench therefore centres by default.
"""
from __future__ import annotations

import numpy as np

from hashbench.linalg import sign_bits
from hashbench.method import ClassicHasher
from hashbench.params import Flag
from hashbench.registry import METHODS


@METHODS.register_module(name="lsh")
class LSH(ClassicHasher):
    """Locality-sensitive hashing: signs of random Gaussian projections (Charikar 2002).

    Parameters
    ----------
    n_bits : int
        Code length K (number of random hyperplanes).
    center : bool, default=True
        Subtract the training mean before projecting. ``False`` gives hyperplanes through the
        origin of the raw feature space (Charikar's hash on the raw vectors).
    random_state : int or None
        Seed of the Gaussian projection matrix.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean, or zeros when ``center=False``.
    projection_ : ndarray of shape (n_features, n_bits)
        The random projection matrix, entries i.i.d. N(0, 1).
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Charikar, "Similarity Estimation Techniques from Rounding Algorithms", STOC 2002.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 16))
    >>> codes = LSH(32, random_state=0).fit(X).encode(X)
    >>> codes.shape, codes.dtype
    ((100, 32), dtype('uint8'))
    """

    _parameter_constraints = {"center": [Flag()]}

    def __init__(self, n_bits: int, *, center: bool = True, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.center = center

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "LSH":
        """Draw the projections for ``X`` (n, d) and, if ``center``, store its mean; ``Y`` is ignored."""
        # No degenerate-data check (see ClassicHasher): the hyperplanes are drawn without looking
        # at X, and the mean only places them. From one row or identical rows the mean is that
        # point, and hyperplanes through it still split every other item at random, as Charikar's
        # hash needs -- unlike pcah/itq/sh, whose directions from such data would be arbitrary.
        X, _ = self._check_fit_input(X, Y, degenerate=False)
        d = X.shape[1]
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(d)
        rng = np.random.default_rng(self.random_state)
        self.projection_ = rng.standard_normal((d, self.n_bits))
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return sign_bits((X - self.mean_) @ self.projection_)
