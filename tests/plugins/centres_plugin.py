"""Family 3 of the contract proof: learnable class centres and a classifier head on the codes.

Both are parameters of the loss (so of the method): the trainer puts them in the optimiser as
``method.loss.centres`` and ``method.loss.classifier.*``, the method's ``lr_mult`` gives the
classifier its own learning rate, and checkpoints hold them.
"""
import torch
import torch.nn.functional as F
from torch import nn

from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="plugin_centre_loss")
class CentreLoss(HashLoss):
    """BCE of a linear classifier on the codes, plus the squared distance to the mean of the
    item's class centres (tanh of a learned (C, K) matrix)."""

    def __init__(self, *, n_bits: int, n_classes: int = 10, weight: float = 0.5):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(n_classes, n_bits, generator=torch.Generator().manual_seed(0)))
        self.classifier = nn.Linear(n_bits, n_classes)
        self.weight = weight

    def forward(self, codes, labels, indices=None, tuples=None, ref=None):
        cls = F.binary_cross_entropy_with_logits(self.classifier(codes), labels)
        target = labels @ torch.tanh(self.centres) / labels.sum(1, keepdim=True).clamp_min(1)
        pull = (codes - target).pow(2).sum(1).mean()
        return dict(loss=cls + self.weight * pull, classification=cls.detach(), pull=pull.detach())


@METHODS.register_module(name="plugin_centres")
class PluginCentres(DeepMethod):
    """Test plugin: learnable class centres and a classifier head, the classifier at 5x the rate."""

    def __init__(self, n_bits: int, *, n_classes: int = 10, lr_mult: dict | None = None):
        super().__init__(n_bits, loss=dict(type="plugin_centre_loss", n_bits=n_bits, n_classes=n_classes),
                         relaxation="tanh", bypass=False,
                         lr_mult={"method.loss.classifier": 5.0} if lr_mult is None else lr_mult)
