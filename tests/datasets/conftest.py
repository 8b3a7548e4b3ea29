"""Fixtures of the dataset tests (defined with the tree builders in dataset_trees.py)."""
from dataset_trees import _private_cache, mirflickr_tree, nuswide_tree  # noqa: F401
