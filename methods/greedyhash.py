"""GreedyHash — Greedy Hash (Shupeng Su, Chao Zhang, Kai Han, Yonghong Tian; NeurIPS 2018, "Greedy
Hash: Towards Fast Optimization for Accurate Hash Coding in CNN", NeurIPS proceedings paper 7360,
pp. 798-807; no arXiv version).

The hash layer's real outputs h_i (B, K) are binarised in the forward pass, b_i = sgn(h_i), and the
backward pass hands the gradient of the loss with respect to b straight to h (dL/dh := dL/db): the
paper's greedy update, a straight-through sign. The codes feed a linear classifier W (K x C, no
bias), and the loss of a batch is

    L = 1/B sum_i CE(W^T b_i, y_i)  +  alpha * 1/(B K) sum_{i,k} | |h_ik| - 1 |^3

The second term is the paper's penalty ||H - sgn(H)||_p^p with p = 3 (elementwise
|h - sgn h| = ||h| - 1|), averaged over the B x K entries as the authors' released code does
(ssppp/GreedyHash, ``cifar1.py``: ``torch.mean(torch.abs(torch.pow(torch.abs(feature) - 1, 3)))``);
it pulls h towards ±1 so that the straight-through gradient stays close to the true one. Its
gradient reaches h directly (h is the layer's output), the classifier's through the
straight-through sign. sgn here is +1 where h > 0 and -1 elsewhere (the threshold of encoding;
torch.sign would give 0 at h = 0).

Classification term (``classification``):

- ``"softmax"``: the paper's softmax cross-entropy, CE = -sum_c y_c log softmax(W^T b)_c, for
  single-label data (y one-hot; the released code's ``nn.CrossEntropyLoss``).
- ``"sigmoid"``: for multi-label data, one sigmoid per label (binary cross-entropy),
  CE = -sum_c [y_c log s(W^T b)_c + (1 - y_c) log(1 - s(W^T b)_c)], summed over the C labels (the
  negative log-likelihood of the item's label vector, as the softmax term is that of its one
  label) and averaged over the batch. The authors give no multi-label extension (their code trains
  CIFAR-10 and ImageNet only), and the reimplementation in swuxyj/DeepHash-pytorch takes an
  argmax of multi-hot labels, so it cannot train on multi-label data at all (its issue #40);
  per-label sigmoids are the standard multi-label form of a softmax classifier.
- ``"auto"`` (default): ``softmax`` when every training item has exactly one label, else
  ``sigmoid``; decided in ``begin`` from the training labels, so the same on every process.

The classifier is created in ``begin`` (sized by the number of labels C), initialised by torch's
default ``nn.Linear`` initialisation from its global RNG (seeded by the trainer, the same on every
process), and trained with the network: it is ``method.loss.classifier.weight``.

Why the relaxation is the identity: the penalty needs h itself, so the codes the loss receives are
the hash layer's linear outputs h (``relaxation="identity"``) and the loss applies the
straight-through sign; a ``relax`` returning sgn(h) would leave the loss nothing to penalise
(| |sgn h| - 1 | = 0). Under DDP the trainer gathers h, so the loss, the sign and the classifier's
gradient are computed on the global batch, identically on every process.

Constants and defaults:

- alpha = 0.1: the released code for CIFAR-10 (``cifar1.py``, ``cifar2.py``: ``loss1 + 0.1 * loss2``;
  its ``imagenet.py`` uses 1, reachable as ``method.alpha=1``); DeepHash-pytorch keeps both.
- p = 3 (the cubic power): the paper's choice, written so in the released code.
- classifier without bias: the released code (``nn.Linear(encode_length, num_classes, bias=False)``).
- one learning rate for every parameter, classifier included (the released code puts
  ``cnn.parameters()``, classifier and hash layer with the backbone, in one SGD group): no
  ``lr_mult``. Weight decay applies to the classifier too, as there.
- identity relaxation (h is the linear hash layer ``fc_plus``'s output), no bypass connection.

Not included: the released code's optimiser schedule (SGD, lr 1e-3, momentum 0.9, weight decay
5e-4, lr x0.1 after 30 of 50 epochs), which is hashbench's ``train`` section, and the paper's
unsupervised variant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.params import Interval, Options, check
from hashbench.registry import LOSSES, METHODS

CLASSIFICATIONS = ("auto", "softmax", "sigmoid")
ALPHA = [Interval(float, 0, None)]


class _StraightThroughSign(torch.autograd.Function):
    """sgn(h) in {-1, +1} (+1 where h > 0) forward; the incoming gradient unchanged backward."""

    @staticmethod
    def forward(ctx, h):
        return torch.where(h > 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def straight_through_sign(h: torch.Tensor) -> torch.Tensor:
    """b = sgn(h) (+1 where h > 0, else -1), with dL/dh = dL/db: GreedyHash's hash layer."""
    return _StraightThroughSign.apply(h)


def cubic_penalty(h: torch.Tensor) -> torch.Tensor:
    """The mean over all entries of | |h| - 1 |^3 (the released code's ``loss2``); a scalar."""
    return (h.abs() - 1).abs().pow(3).mean()


@LOSSES.register_module(name="greedyhash")
class GreedyHashLoss(HashLoss):
    """GreedyHash's classification loss on sgn(h) (straight-through) plus alpha * mean ||h| - 1|^3.

    Parameters
    ----------
    alpha : float
        Weight of the cubic penalty, >= 0.
    classification : {"auto", "softmax", "sigmoid"}
        Softmax cross-entropy (single-label), per-label sigmoid cross-entropy (multi-label), or
        chosen from the training labels in :meth:`begin` (module docstring).

    ``codes`` (B, K) are the hash layer's real outputs h; ``labels`` (B, C) multi-hot, C the number
    of labels seen in :meth:`begin`. Returns ``loss`` and the detached terms ``classification`` and
    ``penalty`` (so ``loss = classification + alpha * penalty``).
    """

    _parameter_constraints = {"alpha": ALPHA, "classification": [Options(*CLASSIFICATIONS)]}

    def __init__(self, *, alpha: float = 0.1, classification: str = "auto"):
        super().__init__()
        self.alpha = float(check("greedyhash: alpha", alpha, ALPHA))
        self.classification = check("greedyhash: classification", classification, [Options(*CLASSIFICATIONS)])
        self.mode: str | None = None  # softmax or sigmoid, fixed in begin

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        """Choose softmax or sigmoid from the training labels (n, C); create the (C x K) classifier."""
        labels = torch.as_tensor(labels, dtype=torch.float32)
        single = bool((labels.sum(dim=1) == 1).all()) and bool(((labels == 0) | (labels == 1)).all())
        if self.classification == "softmax" and not single:
            raise HashbenchError("greedyhash: classification=softmax needs exactly one label per training item; "
                                 f"these have {int(labels.sum(dim=1).min())} to {int(labels.sum(dim=1).max())}; "
                                 "use classification=sigmoid (or auto)")
        self.mode = self.classification if self.classification != "auto" else ("softmax" if single else "sigmoid")
        self.classifier = nn.Linear(n_bits, int(labels.shape[1]), bias=False)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if self.mode is None:
            raise HashbenchError("greedyhash: the classifier is made in begin(train_labels, n_bits); call it first")
        weight = self.classifier.weight
        if labels.shape[1] != weight.shape[0] or codes.shape[1] != weight.shape[1]:
            raise HashbenchError(f"greedyhash: got {labels.shape[1]} labels and {codes.shape[1]} bits; the "
                                 f"classifier is for {weight.shape[0]} labels of {weight.shape[1]} bits")
        b = straight_through_sign(codes)
        logits = F.linear(b, weight.to(codes.dtype))
        labels = labels.to(codes.dtype)
        if self.mode == "softmax":
            cls = -(labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        else:
            cls = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=1).mean()
        penalty = cubic_penalty(codes)
        return dict(loss=cls + self.alpha * penalty, classification=cls.detach(), penalty=penalty.detach())


@METHODS.register_module(name="greedyhash")
class GreedyHash(DeepMethod):
    """GreedyHash (NeurIPS 2018): straight-through sign, a linear classifier on the codes, cubic pull to ±1."""

    family = "pointwise"
    _parameter_constraints = {"alpha": ALPHA, "classification": [Options(*CLASSIFICATIONS)]}

    def __init__(self, n_bits: int, *, alpha: float = 0.1, classification: str = "auto", bypass: bool = False,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(n_bits, loss=dict(type="greedyhash", alpha=alpha, classification=classification),
                         relaxation="identity", bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
