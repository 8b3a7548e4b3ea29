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
  Dividing by n only rescales the loss (public implementations divide so too). Needs the indices
  of the batch in the training set (``needs_index``; ``hashbench.train`` supplies them, and under
  DDP gathers them with the global batch, so every process keeps the same bank). A row is as old
  as the last time its sample was in a batch (up to an epoch): with a backbone trained from
  scratch that lag costs accuracy (README, "Does DSRH beat the others").
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
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.losses import not_self, quantization_error, reduce, unit_similarity
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="dpsh")
class DPSHLoss(nn.Module):
    """DPSH's pairwise negative log-likelihood plus eta * quantisation error.

    Parameters
    ----------
    eta : float
        Weight of the quantisation term ||b - u||^2.
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.
    pairs : {"dataset", "batch"}
        Pair each sample with every training sample (the paper; call :meth:`bind` first and pass
        ``index``) or only with the other samples of its mini-batch.

    Called as ``loss(codes, labels, index=None)``: ``codes`` (B, K) real outputs u, ``labels``
    (B, C) multi-hot, ``index`` (B,) the rows of the batch in the training set (``pairs="dataset"``).
    Returns ``loss`` and the detached terms ``likelihood`` and ``quantization`` (reduced the same
    way, so ``loss = likelihood + eta * quantization``).
    """

    PAIRS = ("dataset", "batch")

    def __init__(self, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean",
                 pairs: str = "dataset"):
        super().__init__()
        if pairs not in self.PAIRS:
            raise HashbenchError(f"dpsh: unknown pairs {pairs!r}; valid: {', '.join(self.PAIRS)}")
        self.eta, self.reduction, self.pairs = float(eta), reduction, pairs
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dpsh")

    @property
    def needs_index(self) -> bool:
        return self.pairs == "dataset"

    def bind(self, labels: torch.Tensor, n_bits: int) -> None:
        """Start a training run on a training set with these ``labels`` (n, C): an empty bank."""
        labels = torch.as_tensor(labels, dtype=torch.float32)
        self.register_buffer("bank_labels", labels)
        self.register_buffer("bank", labels.new_zeros(len(labels), n_bits))

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        if self.pairs == "batch":
            anchors = torch.arange(len(codes), device=codes.device)
            partners, partner_labels, scale = codes, labels, 1.0
        else:
            if index is None or not hasattr(self, "bank"):
                raise HashbenchError("dpsh with pairs=dataset needs bind(train_labels, n_bits) and the batch's "
                                     "training-set index; or use pairs=batch")
            if self.bank.dtype != codes.dtype:
                self.bank = self.bank.to(codes.dtype)
            self.bank[index] = codes.detach()
            # u_i enters theta_ij and theta_ji; the bank holds the other side constant: hence 2
            anchors, partners, partner_labels, scale = index, self.bank, self.bank_labels, 2.0
        s = self.similarity(labels, partner_labels).to(codes.dtype)
        theta = 0.5 * codes @ partners.T
        nll = F.softplus(theta) - s * theta
        pairs = scale * torch.where(not_self(len(partners), anchors), nll, torch.zeros_like(nll)).sum(dim=1)
        quant = quantization_error(codes)
        if self.pairs == "dataset":  # / n: only a rescaling
            pairs, quant = pairs / len(partners), quant / len(partners)
        likelihood, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=likelihood + self.eta * quantization, likelihood=likelihood.detach(),
                    quantization=quantization.detach())


@METHODS.register_module(name="dpsh")
class DPSH(DeepMethod):
    """Deep Pairwise-Supervised Hashing (IJCAI 2016): pairwise likelihood + quantisation, linear codes."""

    def __init__(self, n_bits: int, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean",
                 pairs: str = "dataset", relaxation: str = "identity", bypass: bool = False,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(n_bits, loss=DPSHLoss(eta=eta, similarity=similarity, reduction=reduction, pairs=pairs),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
