"""hashbench: a benchmark toolkit for learning to hash.

Data flow: dataset (``hashbench.datasets``) → backbone (``hashbench.backbones``) → hash head
(``hashbench.model``) → loss (``hashbench.methods``) → codes → Hamming ranking and metrics
(``hashbench.metrics``) → tables (``hashbench.tables``). ``hashbench.runner`` drives it all.
"""
__version__ = "0.1.0"
