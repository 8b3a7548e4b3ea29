"""MIHash — hashing with mutual information (Fatih Cakir, Kun He, Sarah Adel Bargal, Stan Sclaroff:
"MIHash: Online Hashing with Mutual Information", ICCV 2017, arXiv 1703.08919; and "Hashing with
Mutual Information", IEEE TPAMI 2019, arXiv 1803.00974).

Every item of the batch is a query; the other B - 1 items are its retrieval set. For query i let
C be the neighbour indicator of a retrieved item (C = + when it shares at least one label with
the query, - otherwise) and D its Hamming distance to the query. MIHash maximises the mutual
information between the two,

    I(D; C) = H(D) - P(+) H(D | +) - P(-) H(D | -),     H(p) = - sum_l p_l log2 p_l,

so that the distances of neighbours and of non-neighbours separate. Codes are relaxed,
b = 2 sigmoid(a z) - 1, and the distance between relaxed codes is d_ij = (K - b_i . b_j) / 2,
in [0, K]. The distributions of D are histograms over L + 1 bin centres c_l = l Delta
(l = 0..L, Delta = K / L) made differentiable with a triangular kernel:

    delta_l(d) = max(0, 1 - |d - c_l| / Delta)          (the kernels sum to 1 on [0, K])
    p(D = l | +) = (1 / N+) sum_{j in N+} delta_l(d_ij),  p(D = l | -) likewise over N-,
    p(D = l)     = (1 / (B - 1)) sum_{j != i} delta_l(d_ij),
    P(+) = N+ / (B - 1),   P(-) = N- / (B - 1),

where N+ and N- are query i's neighbours and non-neighbours among the other items. The loss of
query i is -I_i; the batch loss is their sum over the queries, as in the released code (whose
layer outputs sum(MI) and back-propagates the gradient of -sum(MI)); ``reduction="mean"`` divides
by B. Each I_i lies in [0, 1] bit, so the sum keeps the gradient's scale that of the released
code's learning rates (and of hashbench's pairwise losses, summed over partners). A query
without a neighbour (or without a non-neighbour) has I = 0 and no gradient (as in the released
code's backward).

At I = 0 (e.g. when every relaxed distance is the same, as with near-zero outputs) the mutual
information is at its minimum, so its gradient vanishes there to first order: training starts
slowly from an initialisation whose outputs are all close to 0 (a larger ``scale`` helps).

Multi-label data: C = + when the two items share at least one label — the released code's
``affinity_binary.m`` (Y1 * Y2' > 0), which is what the authors use on NUS-WIDE.

Constants (all from the authors' deep-learning release, fcakir/deep-mihash, which follows the
TPAMI paper):

- L = n_bins = K / 2 (``get_opts.m``: 'nbins' defaults to nbits/2, "a good value"; its README's
  experiments also use 32, 12 and 16 bins for 32 bits). Centres 0, Delta, ..., K
  (``mi_forward.m``). ``n_bins=K`` gives one bin per integer distance (K + 1 bins). For odd K
  the default is floor(K / 2) bins, which still span 0..K.
- a = 1, the sigmoid sharpness (``get_opts.m``: 'sigmf' [1 0]; the README's runs use 1, 30 and
  10): ``scale``. ``relaxation="tanh"`` gives tanh(a z) instead.
- Entropies in bits (log2, ``mi_forward.m``); 0 log 0 = 0.
- The released backward (``mi_backward.m``) differentiates p log2 p as log2 p + 1 instead of
  log2 p + 1/ln 2; the constant multiplies sum_l d p_l, which is 0 because the kernels sum to
  one, so autograd's gradient is the released one (tests/methods/test_mihash.py checks it
  against a transcription of that derivation). Kernel derivatives at a bin centre are taken
  from the left, as ``triPulseDeriv.m`` does.

The histograms are normalised by the counts N+, N- (the released code divides by the histogram
sums, equal to them since the kernels sum to one on [0, K]; distances are clamped to [0, K]
against rounding). The released MATLAB treats an item as its own neighbour only through the
affinity diagonal; here the query is always left out of its retrieval set.

Defaults: no bypass, one learning rate for all layers. The released code fine-tunes pretrained
networks with their layers at 0.01x the new hash layer's rate (``get_opts.m`` 'lrmult'); with a
pretrained backbone use ``method.lr_mult={"backbone.": 0.01}``.

The differentiable histogram (:func:`triangular_histogram`) is shared with TALR
(:mod:`hashbench.methods.talr`), the same authors' tie-aware ranking losses.
"""
from __future__ import annotations

import torch

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, not_self, reduce, relaxed_hamming
from hashbench.method import DeepMethod
from hashbench.params import Interval, Options, check
from hashbench.registry import LOSSES, METHODS
from hashbench.similarity import binary

N_BINS = [Interval(int, 1, None), None]
SCALE = [Interval(float, 0, None, closed="neither")]
REDUCTION = [Options("sum", "mean")]
_CHUNK_ELEMENTS = 1 << 22  # (rows, items, bins) kernel weights built per forward chunk


class _TriangularHistogram(torch.autograd.Function):
    """out[v, i, l] = sum_j values[v, i, j] * max(0, 1 - |d_ij / delta - l|), l = 0..L.

    Each distance falls between two neighbouring centres lo and lo + 1 (a distance on a centre
    belongs to the interval on its left, as the released ``triPulseDeriv.m``), with weights
    1 - f and f. Forward builds the kernel weights a chunk of rows at a time (deterministic, no
    atomics); backward needs only lo: d out[v,i,lo+1] / d d_ij = -d out[v,i,lo] / d d_ij =
    values[v,i,j] / delta.
    """

    @staticmethod
    def forward(ctx, d, values, delta, n_centres):
        x = d / delta
        inside = (x >= 0) & (x <= n_centres - 1)
        x = x.clamp(0, n_centres - 1)
        lo = (torch.ceil(x) - 1).clamp_(0, n_centres - 2).long()
        n_values, rows, items = values.shape
        out = values.new_zeros(n_values, rows, n_centres)
        centres = torch.arange(n_centres, device=d.device, dtype=d.dtype)
        step = max(1, _CHUNK_ELEMENTS // max(1, items * n_centres))
        for start in range(0, rows, step):
            sl = slice(start, start + step)
            # max(0, 1 - |x - l|): 1 - f at lo, f at lo + 1, 0 elsewhere
            w = (x[sl, :, None] - centres).abs_().neg_().add_(1).clamp_(min=0)
            out[:, sl] = torch.einsum("vbm,bml->vbl", values[:, sl], w)
        ctx.save_for_backward(lo, values, inside)
        ctx.delta = delta
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        lo, values, inside = ctx.saved_tensors
        n_values = values.shape[0]
        index = lo[None].expand(n_values, -1, -1)
        slope = grad_out.gather(2, index + 1) - grad_out.gather(2, index)  # (V, B, M)
        grad_d = (values * slope).sum(dim=0) / ctx.delta
        return torch.where(inside, grad_d, torch.zeros_like(grad_d)), None, None, None


def triangular_histogram(d: torch.Tensor, values: torch.Tensor, n_bins: int, n_bits: int) -> torch.Tensor:
    """Differentiable histograms of distances with a triangular kernel (MIHash, TALR).

    ``d`` (B, M): distances in [0, K] (clamped there; no gradient outside); ``values`` (V, B, M):
    weights of each (query, item) pair in each of V histograms (constants: masks, gains).
    Centres c_l = l * K / n_bins, l = 0..n_bins; kernel max(0, 1 - |d - c_l| / Delta),
    Delta = K / n_bins. Returns (V, B, n_bins + 1): out[v, i, l] = sum_j values[v,i,j] delta_l(d_ij).
    """
    if n_bins < 1:
        raise HashbenchError(f"a histogram needs n_bins >= 1; got {n_bins}")
    return _TriangularHistogram.apply(d, values.detach().to(d.dtype), float(n_bits) / n_bins, n_bins + 1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """-sum_l p_l log2 p_l over the last dimension, with 0 log 0 = 0 (finite gradient at 0)."""
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(p * torch.log2(safe)).sum(dim=-1)


def check_relaxation(owner: str, relaxation: str) -> str:
    """The histogram covers distances 0..K, which needs relaxed codes in [-1, 1]."""
    if relaxation not in ("sigmoid", "tanh"):
        raise HashbenchError(f"{owner}: relaxation must be sigmoid or tanh (its distance histogram covers "
                             f"0..K, so codes must lie in [-1, 1]); got {relaxation!r}")
    return relaxation


@LOSSES.register_module(name="mihash")
class MIHashLoss(HashLoss):
    """MIHash's loss: minus the mutual information between neighbour indicator and distance.

    Parameters
    ----------
    n_bins : int or None
        L: histogram bins, L + 1 centres over 0..K; None: K // 2 (released code).
    reduction : {"sum", "mean"}
        Over the queries (every batch item); ``sum``: the released code.

    ``codes`` (B, K) are relaxed codes in [-1, 1]; ``labels`` (B, C) multi-hot. Returns ``loss``
    (= -I reduced) and the detached term ``mi`` (the mean over queries of I, in bits).
    """

    _parameter_constraints = {"n_bins": N_BINS, "reduction": REDUCTION}

    def __init__(self, *, n_bins: int | None = None, reduction: str = "sum"):
        super().__init__()
        self.n_bins = check("mihash: n_bins", n_bins, N_BINS)
        self.reduction = check("mihash: reduction", reduction, REDUCTION)

    def bins(self, n_bits: int) -> int:
        return self.n_bins if self.n_bins is not None else max(1, n_bits // 2)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        n, k = codes.shape
        if n < 2:  # no retrieval set: nothing to learn from
            zero = codes.sum() * 0
            return dict(loss=zero, mi=zero.detach())
        others = not_self(n, torch.arange(n, device=codes.device))
        near = binary(labels, labels) > 0
        pos, neg = near & others, ~near & others
        d = relaxed_hamming(codes, codes)
        cp, cn = triangular_histogram(d, torch.stack([pos, neg]), self.bins(k), k).double()
        m = float(n - 1)
        n_pos, n_neg = pos.sum(dim=1).double(), neg.sum(dim=1).double()
        p_all = (cp + cn) / m
        p_pos = cp / n_pos.clamp_min(1)[:, None]
        p_neg = cn / n_neg.clamp_min(1)[:, None]
        mi = entropy(p_all) - n_pos / m * entropy(p_pos) - n_neg / m * entropy(p_neg)
        mi = torch.where((n_pos > 0) & (n_neg > 0), mi, torch.zeros_like(mi))
        loss = reduce(-mi, self.reduction).to(codes.dtype)
        return dict(loss=loss, mi=mi.mean().detach().to(codes.dtype))


@METHODS.register_module(name="mihash")
class MIHash(DeepMethod):
    """MIHash (ICCV 2017, TPAMI 2019): maximise mutual information of neighbour labels and Hamming distances."""

    family = "listwise"
    _parameter_constraints = {"n_bins": N_BINS, "scale": SCALE, "reduction": REDUCTION,
                              "relaxation": [Options("sigmoid", "tanh")]}

    def __init__(self, n_bits: int, *, n_bins: int | None = None, scale: float = 1.0, reduction: str = "sum",
                 relaxation: str = "sigmoid", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        check_relaxation("mihash", relaxation)
        super().__init__(n_bits, loss=dict(type="mihash", n_bins=n_bins, reduction=reduction),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
        self.scale = float(check("mihash: scale", scale, SCALE))

    def relax(self, z, progress: float):
        """b = 2 sigmoid(scale z) - 1 (or tanh(scale z))."""
        return super().relax(self.scale * z, progress)
