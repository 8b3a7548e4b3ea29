"""DPSH — Deep Pairwise-Supervised Hashing (Wu-Jun Li, Sheng Wang, Wang-Cheng Kang; IJCAI 2016,
"Feature Learning based Deep Supervised Hashing with Pairwise Labels", arXiv 1511.03855).

The network's hash layer outputs real values u_i (no squashing); the binary code is b_i = sign(u_i).
With pairwise labels s_ij in {0, 1} (1: the two images are similar) the loss is

    L = - sum_{i != j} ( s_ij * theta_ij - log(1 + exp(theta_ij)) )  +  eta * sum_i ||b_i - u_i||^2
    theta_ij = 1/2 * u_i . u_j

The first term is the negative log-likelihood of the labels under p(s_ij = 1 | u) = sigmoid(theta_ij)
(for ±1 codes, theta_ij = K/2 - Hamming distance); the second pulls u towards its binary code.
log(1 + exp(theta)) is computed as softplus(theta), which stays finite for saturated outputs.

Pairs (``pairs``). In the paper every sample is paired with *every* training sample: the gradient of
L with respect to u_i is sum_j (sigmoid(theta_ij) - s_ij) u_j + 2 eta (u_i - b_i) over all j != i,
and eta = 10 balances the quantisation term against that sum over the whole training set.

- ``pairs="dataset"`` (default, the paper's): the loss keeps the last output of every training
  sample (a bank U, (n, K), zeros until a sample is first seen; its batch rows are set to the
  current outputs before each step). The loss of anchor i is
  (2 sum_{j != i} [softplus(theta_ij) - s_ij theta_ij] + eta ||b_i - u_i||^2) / n with
  theta_ij = 1/2 u_i . U_j and U constant, whose gradient with respect to the batch's outputs is
  the paper's gradient above divided by n (the factor 2: u_i enters both theta_ij and theta_ji).
  Dividing by n only rescales the loss (public implementations divide so too). The bank is a
  separate piece, :class:`TrainingSetBank`, wrapped around the loss: it learns the training set in
  ``begin``, writes the batch's rows (the trainer passes every item's training-set row, and under
  DDP gathers them with the global batch, so every process keeps the same bank) and hands the
  bank to the loss as its reference set. It is part of the method's state, so a checkpoint holds
  it. A row is as old as the last time its sample was in a batch (up to an epoch): with a
  backbone trained from scratch that lag costs accuracy (measured in the README's comparison).
- ``pairs="batch"``: only the pairs of the mini-batch (every ordered pair i != j). The loss of
  anchor i is sum_{j != i} [softplus(theta_ij) - s_ij theta_ij] + eta ||b_i - u_i||^2, so the sum
  over anchors is the paper's objective restricted to the batch. With eta = 10 the quantisation
  term then outweighs B - 1 pairs instead of n - 1 and the codes barely leave their random start
  (on the embedded data, NDCG@100 near chance); lower eta (e.g. 0.1) when using it.

The batch loss is the mean over anchors (``reduction="sum"`` sums). s_ij comes from the shared label
similarity (default ``binary``: share at least one label, as in the paper; ``cosine`` gives a soft
target in [0, 1]).

Defaults: pairs = dataset, eta = 10 (the paper's setting), identity relaxation (u is the hash
layer's linear output), no bypass connection and one learning rate for all layers (the paper
trains CNN-F end to end with a plain linear hash layer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, Reference, not_self, quantization_error, reduce, self_mask, unit_similarity
from hashbench.method import DeepMethod
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="dpsh")
class DPSHLoss(HashLoss):
    """DPSH's pairwise negative log-likelihood plus eta * quantisation error.

    Parameters
    ----------
    eta : float
        Weight of the quantisation term ||b - u||^2.
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    ``codes`` (B, K) are the real outputs u. Without ``ref``, every ordered in-batch pair; with a
    reference set of n items (the bank of :class:`TrainingSetBank`), each batch item against every
    reference item that is not itself, as the module docstring derives (x2, /n). Returns ``loss``
    and the detached terms ``likelihood`` and ``quantization`` (reduced the same way, so
    ``loss = likelihood + eta * quantization``).
    """

    takes = frozenset({"ref"})
    _parameter_constraints = {"eta": [Interval(float, 0, None)], "reduction": [Options("mean", "sum")]}

    def __init__(self, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean"):
        super().__init__()
        self.eta, self.reduction = float(eta), reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dpsh")

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if ref is None:
            partners, partner_labels, scale = codes, labels, 1.0
            others = not_self(len(codes), torch.arange(len(codes), device=codes.device))
        else:
            # u_i enters theta_ij and theta_ji; the bank holds the other side constant: hence 2
            partners, partner_labels, scale = ref.codes, ref.labels, 2.0
            others = self_mask(indices, ref.indices)
        s = self.similarity(labels, partner_labels).to(codes.dtype)
        theta = 0.5 * codes @ partners.T
        nll = F.softplus(theta) - s * theta
        pairs = scale * torch.where(others, nll, torch.zeros_like(nll)).sum(dim=1)
        quant = quantization_error(codes)
        if ref is not None:  # / n: only a rescaling
            pairs, quant = pairs / len(partners), quant / len(partners)
        likelihood, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=likelihood + self.eta * quantization, likelihood=likelihood.detach(),
                    quantization=quantization.detach())


class TrainingSetBank(HashLoss):
    """A memory of the last output of every training sample, fed to ``loss`` as its reference set.

    ``begin(labels, n_bits)`` makes an empty (zero) bank for the n training samples; each call
    first writes the batch's outputs into the bank at the batch's training-set rows ``indices``,
    then calls ``loss(codes, labels, indices, ref=Reference(bank, bank labels, 0..n-1))``. The bank
    is a buffer: it moves with the method and is saved in checkpoints.
    """

    def __init__(self, loss: HashLoss):
        super().__init__()
        self.inner = loss
        self.takes = loss.takes - {"ref"}

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        labels = torch.as_tensor(labels, dtype=torch.float32)
        self.register_buffer("bank_labels", labels)
        self.register_buffer("bank", labels.new_zeros(len(labels), n_bits))
        self.register_buffer("rows", torch.arange(len(labels)), persistent=False)  # 0..n-1: not state

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if indices is None or not hasattr(self, "bank"):
            raise HashbenchError("a training-set bank needs begin(train_labels, n_bits) first and the batch's "
                                 "training-set rows")
        if self.bank.dtype != codes.dtype:
            self.bank = self.bank.to(codes.dtype)
        self.bank[indices] = codes.detach()
        return self.inner(codes, labels, indices, tuples=tuples,
                          ref=Reference(self.bank, self.bank_labels, self.rows))


@METHODS.register_module(name="dpsh")
class DPSH(DeepMethod):
    """Deep Pairwise-Supervised Hashing (IJCAI 2016): pairwise likelihood + quantisation, linear codes."""

    family = "pairwise"

    PAIRS = ("dataset", "batch")
    _parameter_constraints = {"eta": [Interval(float, 0, None)], "reduction": [Options("mean", "sum")],
                              "pairs": [Options(*PAIRS)]}

    def __init__(self, n_bits: int, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean",
                 pairs: str = "dataset", relaxation: str = "identity", bypass: bool = False,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        if pairs not in self.PAIRS:
            raise HashbenchError(f"dpsh: unknown pairs {pairs!r}; valid: {', '.join(self.PAIRS)}")
        super().__init__(n_bits, loss=dict(type="dpsh", eta=eta, similarity=similarity, reduction=reduction),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
        self.pairs = pairs
        if pairs == "dataset":  # the paper's: every sample against the whole training set
            self.loss = TrainingSetBank(self.loss)
