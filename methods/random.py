"""``random``: independent fair coin flips per item and bit — the chance row of every table."""
from __future__ import annotations

import numpy as np

from hashbench.method import ClassicHasher
from hashbench.registry import METHODS


@METHODS.register_module(name="random")
class RandomCodes(ClassicHasher):
    """Random codes (chance level): every bit of every item an independent fair coin flip.

    Each ``encode`` call draws fresh codes from a generator seeded by ``random_state`` and the
    number of items encoded so far, so query and database codes are independent yet reproducible.
    """

    family = "baseline"
    needs_features = False

    def fit(self, X, Y=None):
        X, _ = self._check_fit_input(X, Y)
        self.n_encoded_ = 0
        return self

    def encode(self, X):
        X = self._check_encode_input(X)
        rng = np.random.default_rng([self.random_state or 0, self.n_encoded_])
        self.n_encoded_ += len(X)
        return rng.integers(0, 2, size=(len(X), self.n_bits), dtype=np.uint8)
