"""OrthoHash — Jiun Tian Hoe, Kam Woh Ng, Tianyu Zhang, Chee Seng Chan, Yi-Zhe Song, Tao Xiang,
"One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning Objective",
NeurIPS 2021, arXiv 2109.14449.

Each class c has a fixed binary "orthogonal" codeword o_c in {-1, +1}^K; the continuous codes v_i
(the hash layer's outputs after a BatchNorm layer, which balances the bits; the binary code is
sign(v_i), thresholded with the running statistics at encoding) are classified by their scaled
cosine similarity to the codewords, with an additive cosine margin m on the true class(es):

    cos_ic  = <v_i, o_c> / (||v_i|| ||o_c||)
    logit_ic = s * (cos_ic - m * y_ic)                        (``margin_type="cos"``, OrthoCos)
    logit_ic = s * cos(arccos(cos_ic) + m * y_ic)              (``margin_type="arc"``, OrthoArc)
    L_i = - sum_c (y_ic / sum_j y_ij) * log softmax_c(logit_i)  +  quan * Q_i

For a single label this is the softmax cross-entropy of the true class (supplementary Eq. 7 and
Algorithm 1). Maximising cos(v, o_y) also minimises the quantisation error, since
||v - b||^2 = 2K (1 - cos(v, b)) when ||v|| = sqrt(K) (supplementary B): hence "one loss".

Multi-label (the paper's "label smoothing", supplementary Algorithm 1 and Table 5, run on NUS-WIDE
and MS-COCO; the authors' code ``functions/loss/orthohash.py`` with its default
``multiclass_loss="label_smoothing"``): the same softmax over all C classes, the margin subtracted from every
positive class, and the target distribution spread evenly over the item's labels, y_ic / |y_i|
("label smoothing"). The code's alternatives (sigmoid BCE, with or without imbalance weights)
score worse in the supplementary Table 5 and are not included. An item with no label has no target
and contributes 0 (the denominator is clamped to 1).

Quantisation term Q_i (``quan_type``), b_i = sign(v_i) a constant (no gradient; +1 where v > 0,
-1 elsewhere, the encoding threshold): ``"cs"`` 1 - cos(v_i, b_i); ``"l1"`` (1/K) sum_k |v_ik - b_ik|;
``"l2"`` (1/K) sum_k (v_ik - b_ik)^2 — the authors' code's three choices. Its weight ``quan`` is 0
by default: the paper's model is the single loss above (supplementary Table 1 lists no weight; the
code's ``--quan`` default is 0.0).

Codewords (``codebook``), drawn once in ``begin`` from torch's global RNG (the trainer seeds it with
the run seed, the same on every process) and kept as a buffer (saved in checkpoints):
``"bernoulli"`` (default): every bit ±1 with probability 1/2 (supplementary Algorithm 1,
``o = bernoulli(0.5) * 2 - 1``; the code's ``--codebook-method B`` default); ``"maxhd"``: the
greedy maximum-Hamming-distance search of supplementary Algorithm 3 (the code's ``O``; see
:func:`hashbench.methods.dpn.maxhd_codes`). Supplementary Table 4 finds the two (and Hadamard rows)
within about 1% mAP of each other.

Constants and defaults:

- scale s = sqrt(K): the paper (supplementary Eq. 7, Table 1 "s = sqrt(K)", Algorithm 1 "scale:
  default is sqrt(K)"). The released code fixes ``--scale 8`` instead, which is sqrt(K) at its
  default 64 bits; ``method.scale=8`` gives it. hashbench follows the paper.
- margin m = 0.2: the paper (supplementary Table 1 and D.1 "In the main paper, we set m = 0.2")
  and the code's ``--margin`` default (its README's CIFAR-10 example and FIRe's template use 0.3).
- cosine margin (``margin_type="cos"``, OrthoCos): the paper's main model; ``"arc"`` is OrthoArc,
  within 0.2% of it (supplementary D.1); arccos is taken of cos clamped to +-0.99999, as in the code.
- quan = 0, quan_type = cs: the code's defaults (above).
- hash layer (and its BatchNorm) at 10x the backbone's learning rate: the paper trains the backbone
  at one tenth of the latent layer's rate (supplementary C; the code's ``backbone_lr_scale = 0.1``);
  hashbench multiplies the head's rate instead (``lr_mult={"head.": 10}``), the same ratio.
- ``code_norm = "batch"``: the BatchNorm on the K outputs (the code's ``hash_fc`` = Linear + BatchNorm1d);
  identity relaxation (the cosine ignores the scale of v), no bypass.

The codewords are fixed, so data-parallel training needs nothing more: they are the same on every
process and the loss is computed on the global batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, reduce
from hashbench.method import DeepMethod
from hashbench.methods.dpn import CODEBOOKS, _check_at_least, _check_option, class_codewords
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS

MARGIN_TYPES = ("cos", "arc")
QUAN_TYPES = ("cs", "l1", "l2")
ARC_CLAMP = 0.99999  # |cos| bound before arccos, as the released code

_CONSTRAINTS = {"scale": [Interval(float, 0, None, closed="neither"), None], "margin": [Interval(float, 0, None)],
                "margin_type": [Options(*MARGIN_TYPES)], "quan": [Interval(float, 0, None)],
                "quan_type": [Options(*QUAN_TYPES)], "codebook": [Options(*CODEBOOKS)],
                "reduction": [Options("mean", "sum")]}


@LOSSES.register_module(name="orthohash")
class OrthoHashLoss(HashLoss):
    """OrthoHash's scaled-cosine softmax cross-entropy to fixed ±1 class codewords, with a margin.

    Parameters
    ----------
    scale : float or None
        s; None: sqrt(K) (the paper).
    margin : float
        m, >= 0, subtracted from the cosine (``cos``) or added to the angle (``arc``) of every
        positive class.
    margin_type : {"cos", "arc"}
    quan : float
        Weight of the quantisation term, >= 0.
    quan_type : {"cs", "l1", "l2"}
    codebook : {"bernoulli", "maxhd"}
        How :meth:`begin` draws the (C, K) codewords.
    reduction : {"mean", "sum"}
        Over the items of the batch.

    ``codes`` (B, K) are the batch-normalised continuous codes v; ``labels`` (B, C) multi-hot.
    Returns ``loss`` and the detached terms ``ce`` and ``quantization`` (reduced the same way, so
    ``loss = ce + quan * quantization``).
    """

    _parameter_constraints = _CONSTRAINTS

    def __init__(self, *, scale: float | None = None, margin: float = 0.2, margin_type: str = "cos",
                 quan: float = 0.0, quan_type: str = "cs", codebook: str = "bernoulli", reduction: str = "mean"):
        super().__init__()
        if scale is not None:
            scale = _check_at_least("orthohash", "scale", scale, 0.0)
            if scale <= 0:
                raise HashbenchError(f"orthohash: scale must be a number > 0 or None (sqrt(K)); got {scale!r}")
        self.scale = scale
        self.margin = _check_at_least("orthohash", "margin", margin, 0.0)
        self.quan = _check_at_least("orthohash", "quan", quan, 0.0)
        _check_option("orthohash", "margin_type", margin_type, MARGIN_TYPES)
        _check_option("orthohash", "quan_type", quan_type, QUAN_TYPES)
        _check_option("orthohash", "codebook", codebook, CODEBOOKS)
        _check_option("orthohash", "reduction", reduction, ("mean", "sum"))
        self.margin_type, self.quan_type = margin_type, quan_type
        self.codebook, self.reduction = codebook, reduction

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        """Draw the (C, K) ±1 codewords from torch's global RNG."""
        self.register_buffer("codewords", class_codewords(int(labels.shape[1]), n_bits, self.codebook))

    def logits(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, C) scaled cosine logits with the margin on the positive classes."""
        s = math.sqrt(codes.shape[1]) if self.scale is None else self.scale
        cos = F.normalize(codes, dim=1) @ F.normalize(self.codewords.to(codes.dtype), dim=1).T
        if self.margin_type == "cos":
            return s * (cos - self.margin * labels)
        return s * torch.cos(torch.acos(cos.clamp(-ARC_CLAMP, ARC_CLAMP)) + self.margin * labels)

    def quantization(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-item quantisation error Q_i (B,) against b = sign(v) (constant)."""
        b = torch.where(codes.detach() > 0, 1.0, -1.0).to(codes.dtype)
        if self.quan_type == "cs":
            return 1 - F.cosine_similarity(codes, b, dim=1)
        if self.quan_type == "l1":
            return (codes - b).abs().mean(dim=1)
        return (codes - b).pow(2).mean(dim=1)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if not hasattr(self, "codewords"):
            raise HashbenchError("orthohash: the class codewords are made in begin(train_labels, n_bits); "
                                 "call it first")
        if labels.shape[1] != self.codewords.shape[0] or codes.shape[1] != self.codewords.shape[1]:
            raise HashbenchError(f"orthohash: got {labels.shape[1]} labels and {codes.shape[1]} bits; the codewords "
                                 f"are for {self.codewords.shape[0]} classes of {self.codewords.shape[1]} bits")
        labels = labels.to(codes.dtype)
        target = labels / labels.sum(dim=1, keepdim=True).clamp_min(1)  # y_ic / |y_i| ("label smoothing")
        ce = -(target * F.log_softmax(self.logits(codes, labels), dim=1)).sum(dim=1)
        ce = reduce(ce, self.reduction)
        if self.quan > 0:
            quantization = reduce(self.quantization(codes), self.reduction)
            loss = ce + self.quan * quantization
        else:  # no term, no graph: the paper's single loss
            quantization = reduce(self.quantization(codes.detach()), self.reduction)
            loss = ce
        return dict(loss=loss, ce=ce.detach(), quantization=quantization.detach())


@METHODS.register_module(name="orthohash")
class OrthoHash(DeepMethod):
    """OrthoHash (NeurIPS 2021): margin softmax on cos(BN codes, ±1 class codewords), one loss."""

    family = "pointwise"
    code_norm = "batch"
    _parameter_constraints = _CONSTRAINTS

    def __init__(self, n_bits: int, *, scale: float | None = None, margin: float = 0.2, margin_type: str = "cos",
                 quan: float = 0.0, quan_type: str = "cs", codebook: str = "bernoulli", reduction: str = "mean",
                 bypass: bool = False, lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="orthohash", scale=scale, margin=margin, margin_type=margin_type, quan=quan,
                              quan_type=quan_type, codebook=codebook, reduction=reduction),
            relaxation="identity", bypass=bypass, lr_mult={"head.": 10.0} if lr_mult is None else lr_mult,
            head_lr_drop=head_lr_drop)
