"""TALR — hashing as tie-aware learning to rank (Kun He, Fatih Cakir, Sarah Adel Bargal, Stan
Sclaroff: "Hashing as Tie-Aware Learning to Rank", CVPR 2018, arXiv 1705.08562).

Ranking by the integer Hamming distance makes ties; the tie-aware metrics (the expectation over
every order inside each group of equal distance, which hashbench evaluates with
``ties="expected"``) depend only on per-distance counts. TALR relaxes those counts and maximises
the tie-aware AP or NDCG directly. Every batch item is a query; its retrieval set is the other
B - 1 items. Codes are relaxed, b = 2 sigmoid(gamma z) - 1, distances d_ij = (K - b_i . b_j) / 2
lie in [0, K], and the counts per distance are triangular-kernel histograms over the centres
c_l = l Delta, l = 0..L, Delta = K / L (the same binning as MIHash,
:func:`hashbench.methods.mihash.triangular_histogram`):

    n_l  = sum_{j != i} delta_l(d_ij),      n+_l = sum_{j relevant} delta_l(d_ij),
    G_l  = sum_{j != i} (2^{r_ij} - 1) delta_l(d_ij),
    N_l  = sum_{l' <= l} n_l',  s_l = N_{l-1} (items ranked before group l),  P_l = N+_{l-1}.

``objective="ap"`` (binary relevance: shares at least one label). The tie-aware AP of a query
with R relevant items is (the paper's tie-aware AP; TALR's ``+eval/tieAP.m``; hashbench's metrics)

    AP_T = (1/R) sum_l (n+_l / n_l) sum_{t=1}^{n_l} [P_l + 1 + (t-1) (n+_l - 1)/(n_l - 1)] / (s_l + t)
         = (1/R) sum_l n+_l [ (P_l + 1) A_l + (n+_l - 1) B_l ],
    A_l = (H(s_l + n_l) - H(s_l)) / n_l,     B_l = (1 - (s_l + 1) A_l) / (n_l - 1),

with H the harmonic numbers. To evaluate it on real-valued counts H is extended by the digamma
function, H(x) = psi(x + 1) + gamma_Euler, for which H(x + 1) - H(x) = 1/(x + 1) holds for every
real x: B_l then has a removable singularity at n_l = 1 (and A_l at n_l = 0), evaluated there by
its Taylor series. At integer counts (exactly binary codes with one bin per distance) the value
is exactly the tie-aware AP.

``objective="ndcg"`` (graded relevance r_ij = number of shared labels, gain 2^r - 1, discount
1 / log2(1 + rank), as the paper and hashbench's ``ndcg``):

    NDCG_T = (1/IDCG) sum_l (G_l / n_l) (S(N_l) - S(s_l)),   S(x) = sum_{t=1}^{x} 1 / log2(1 + t),

the mean discount over a tie group's ranks times its total gain (TALR's ``+eval/tieNDCG.m``).
S is extended to real x by linear interpolation between integers (exact at integer counts).
IDCG is the DCG of the other items sorted by gain (the query itself left out).

The loss of query i is 1 - AP_T (or 1 - NDCG_T); the batch loss their sum over the queries, as
the released code (which maximises the batch's sum of the metric); ``reduction="mean"`` divides
by B (then loss = 1 - the batch's mean metric). A query with no relevant item scores 0
(constant, no gradient), as hashbench's ``no_relevant="zero"``.

Paper and released code. The paper relaxes the tie-aware metrics themselves: ``form="exact"``,
the default, implemented as above — the extension of the within-group sums to real counts
(digamma, interpolation) is hashbench's. The released code (kunhe/TALR) provides only
"simplified" relaxations (its README: "similar performance compared to the original versions,
but much simpler"; derived in the arXiv v4 appendix), reached with ``form="simplified"``:

    AP_s   = (1/R) sum_l n+_l (P_l + N+_l + 1) / (s_l + N_l + 1)               (apr_s_forward.m)
    NDCG_s = (1/IDCG) sum_l G_l / log2(s_l + (n_l + 1)/2 + 1)               (ndcgr_s_forward.m)

(the precision, or the discount, at the group's middle rank). Two more differences of the
released NDCG code, not the paper: it divides shared-label counts by the batch maximum
(``affinity_multlv.m``; ``relevance_scale="batch_max"`` reproduces it) and includes the query
itself in the ideal DCG (not reproduced: hashbench's ideal is over the retrieval set, so that
NDCG = 1 is reachable, as in the metric).

Constants (released code, ``main/get_opts.m``):

- L = n_bins = K: one bin per integer distance ('nbins' defaults to nbits, "by default
  (nbits+1)" bins); its ``run_*.m`` scripts use K/2 for K >= 32. Kernel half-width Delta
  ('delta' = 1).
- gamma = 1 ('gamma' [1 0 0]: no annealing): ``scale``. The code computes
  2 * sigmf(x, [gamma 0]) - 1 and calls it the tanh relaxation (tanh(x) = 2 sigmoid(2x) - 1);
  ``relaxation="tanh"`` gives tanh(gamma z).
- AP relevance: shares >= 1 label (``affinity_binary.m``); NDCG: shared-label count, gain 2^r - 1,
  discount 1/log2(1 + t) (``ndcgr_s_forward.m``, paper).

Defaults: no bypass, one learning rate for all layers. The released code fine-tunes pretrained
VGG-F with its layers at 0.1x (CIFAR-10) or 0.01x (NUS-WIDE) the hash layer's rate
('lrmult'); with a pretrained backbone use e.g. ``method.lr_mult={"backbone.": 0.1}``.

The histogram, the relaxed counts and the metric are computed for the whole batch at once;
the counts are turned into the metric in float64 (digamma and the divisions near the removable
singularities need it).
"""
from __future__ import annotations

import torch

from hashbench.losses import HashLoss, not_self, reduce, relaxed_hamming
from hashbench.method import DeepMethod
from hashbench.methods.mihash import N_BINS, REDUCTION, SCALE, check_relaxation, triangular_histogram
from hashbench.params import Options, check
from hashbench.registry import LOSSES, METHODS
from hashbench.similarity import binary, graded

OBJECTIVES = ("ap", "ndcg")
FORMS = ("exact", "simplified")
RELEVANCE_SCALES = ("count", "batch_max")
_CONSTRAINTS = {"objective": [Options(*OBJECTIVES)], "form": [Options(*FORMS)], "n_bins": N_BINS,
                "relevance_scale": [Options(*RELEVANCE_SCALES)], "reduction": REDUCTION}
_SMALL = 1e-4  # |n| (for A) or |n - 1| (for B) below this: Taylor series (error ~1e-12)


_BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510)  # B_2 .. B_16
_SHIFT = 6  # recurrence steps before the asymptotic series (at x + 6 >= 7: ~1e-15 relative)


def _horner(coefficients, t2):
    out = torch.full_like(t2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * t2 + c
    return out


def _polygammas(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The polygamma functions psi^(k)(x), k = 1, 2, 3, for x >= 1, to ~1e-15 relative, in a few
    dozen elementwise operations (torch's polygamma is slow for k >= 2 and its trigamma only ~5e-10
    accurate near 1): psi^(k)(x) = (-1)^(k+1) k! sum_{j<6} (x+j)^-(k+1) + psi^(k)(y), y = x + 6,
    with the asymptotic series psi^(k)(y) ~ (-1)^(k+1) [(k-1)!/y^k + k!/(2 y^(k+1))
    + sum_j B_2j (2j+k-1)!/((2j)! y^(2j+k))]."""
    s1 = s2 = s3 = torch.zeros_like(x)
    for j in range(_SHIFT):
        r = 1 / (x + j)
        r2 = r * r
        s1, s2, s3 = s1 + r2, s2 + r2 * r, s3 + r2 * r2
    t = 1 / (x + _SHIFT)
    t2 = t * t
    b = _BERNOULLI
    psi1 = s1 + t + t2 / 2 + t2 * t * _horner(b, t2)
    psi2 = -2 * s2 - (t2 + t2 * t + t2 * t2 * _horner([c * (2 * j + 1) for j, c in enumerate(b, 1)], t2))
    psi3 = 6 * s3 + 2 * t2 * t + 3 * t2 * t2 + t2 * t2 * t * _horner(
        [c * (2 * j + 1) * (2 * j + 2) for j, c in enumerate(b, 1)], t2)
    return psi1, psi2, psi3


def _harmonic_gap(s, n, psi=None):
    """A = (H(s + n) - H(s)) / n with H(x) = psi(x + 1) + gamma, for n >= 0 (limit psi'(s + 1) at 0).
    ``psi``: the polygammas of s + 1 (:func:`_polygammas`), if already computed."""
    a = s + 1
    small = n.abs() < _SMALL
    n_safe = torch.where(small, torch.ones_like(n), n)
    exact = (torch.digamma(a + n_safe) - torch.digamma(a)) / n_safe
    psi1, psi2, psi3 = _polygammas(a) if psi is None else psi
    taylor = psi1 + n * psi2 / 2 + n * n * psi3 / 6
    return torch.where(small, taylor, exact)


def _tie_slope(s, n, gap, psi=None):
    """B = (1 - (s + 1) A) / (n - 1), A = ``gap``; at n = 1 the numerator vanishes for every real s.
    ``psi``: the polygammas of s + 1, if already computed."""
    a = s + 1
    u = n - 1
    near = u.abs() < _SMALL
    u_safe = torch.where(near, torch.ones_like(u), u)
    exact = (1 - a * gap) / u_safe
    u = torch.where(near, u, torch.zeros_like(u))  # no 1/(1 + u) blow-up off the branch
    psi1, psi2, psi3 = _polygammas(a) if psi is None else psi
    inv = 1 / a  # the polygammas of a + 1 by the recurrence psi^(k)(x+1) = psi^(k)(x) + (-1)^k k! / x^(k+1)
    inv2 = inv * inv
    psi1, psi2, psi3 = psi1 - inv2, psi2 + 2 * inv2 * inv, psi3 - 6 * inv2 * inv2
    taylor = (1 - a * psi1 - a * u * psi2 / 2 - a * u * u * psi3 / 6) / (1 + u)
    return torch.where(near, taylor, exact)


def tie_aware_ap(cp: torch.Tensor, cn: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """Sum over groups of query i's AP numerator, sum_l E[precision of the relevant in group l],
    from relevant / irrelevant counts ``cp``, ``cn`` (B, L) in rank order; divide by R for AP."""
    c = cp + cn
    total = torch.cumsum(c, dim=1)
    total_pos = torch.cumsum(cp, dim=1)
    before, before_pos = total - c, total_pos - cp
    if not exact:  # released code's simplified form: precision at the group's middle rank
        return (cp * (before_pos + total_pos + 1) / (before + total + 1)).sum(dim=1)
    psi = _polygammas(before + 1)
    gap = _harmonic_gap(before, c, psi)
    share = cp * ((before_pos + 1) * gap + (cp - 1) * _tie_slope(before, c, gap, psi))
    return share.sum(dim=1)


def discount_sum(x: torch.Tensor, prefix: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
    """S(x) = sum_{t=1}^{x} 1/log2(1 + t), linear between integers; ``prefix[k]`` = S(k) and
    ``discount[k]`` = 1/log2(1 + k) (k = 0..M + 1, index 0 unused)."""
    k = x.detach().floor().clamp(0, len(prefix) - 2).long()
    return prefix[k] + (x - k) * discount[k + 1]


def tie_aware_dcg(c: torch.Tensor, gain: torch.Tensor, n_items: int, exact: bool = True) -> torch.Tensor:
    """Each query's DCG from item counts ``c`` and gain sums ``gain`` (B, L) per group in rank
    order, over a retrieval set of ``n_items`` items."""
    total = torch.cumsum(c, dim=1)
    before = total - c
    if not exact:  # released code's simplified form: the discount of the group's middle rank
        return (gain / torch.log2(before + (c + 1) / 2 + 1)).sum(dim=1)
    m = n_items  # ranks 1..M, and M + 1 for the interpolation's right end
    ranks = torch.arange(0, m + 2, dtype=c.dtype, device=c.device)
    discount = torch.where(ranks > 0, 1 / torch.log2(1 + ranks.clamp_min(1)), torch.zeros_like(ranks))
    prefix = torch.cumsum(discount, dim=0)
    small = c < _SMALL
    c_safe = torch.where(small, torch.ones_like(c), c)
    mean = (discount_sum(before + c_safe, prefix, discount) - discount_sum(before, prefix, discount)) / c_safe
    slope = discount[before.detach().floor().clamp(0, m).long() + 1]  # limit at c -> 0
    return (gain * torch.where(small, slope, mean)).sum(dim=1)


def ideal_dcg(gains: torch.Tensor) -> torch.Tensor:
    """DCG of each row's gains (B, M) sorted in decreasing order (zero-gain entries add nothing)."""
    ranked = gains.sort(dim=1, descending=True).values
    ranks = torch.arange(1, gains.shape[1] + 1, dtype=gains.dtype, device=gains.device)
    return ranked @ (1 / torch.log2(1 + ranks))


@LOSSES.register_module(name="talr")
class TALRLoss(HashLoss):
    """TALR's loss: 1 - the relaxed tie-aware AP (or NDCG) of every batch item against the others.

    Parameters
    ----------
    objective : {"ap", "ndcg"}
        Tie-aware AP (binary relevance) or NDCG (graded relevance, gain 2^r - 1).
    form : {"exact", "simplified"}
        The tie-aware metric itself on relaxed counts (paper), or the released code's simplified
        relaxation.
    n_bins : int or None
        L: histogram bins, L + 1 centres over 0..K; None: K (one per integer distance).
    relevance_scale : {"count", "batch_max"}
        NDCG relevance: shared-label count r, or r / (largest r in the batch) as the released code.
    reduction : {"sum", "mean"}
        Over the queries; ``sum``: the released code.

    ``codes`` (B, K) relaxed codes in [-1, 1], ``labels`` (B, C) multi-hot. Returns ``loss`` and
    the detached term ``ap`` or ``ndcg``: the mean relaxed metric over the batch's queries.
    """

    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, *, objective: str = "ap", form: str = "exact", n_bins: int | None = None,
                 relevance_scale: str = "count", reduction: str = "sum"):
        super().__init__()
        values = dict(objective=objective, form=form, n_bins=n_bins, relevance_scale=relevance_scale,
                      reduction=reduction)
        for key, value in values.items():
            setattr(self, key, check(f"talr: {key}", value, _CONSTRAINTS[key]))

    def bins(self, n_bits: int) -> int:
        return self.n_bins if self.n_bins is not None else n_bits

    def metric(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The relaxed tie-aware AP or NDCG of each query (B,), float64."""
        n, k = codes.shape
        others = not_self(n, torch.arange(n, device=codes.device))
        d = relaxed_hamming(codes, codes)
        exact = self.form == "exact"
        if self.objective == "ap":
            rel = (binary(labels, labels) > 0) & others
            cp, cn = triangular_histogram(d, torch.stack([rel, ~rel & others]), self.bins(k), k).double()
            n_rel = rel.sum(dim=1).double()
            ap = tie_aware_ap(cp, cn, exact) / n_rel.clamp_min(1)
            return torch.where(n_rel > 0, ap, torch.zeros_like(ap))
        r = graded(labels, labels).double()
        if self.relevance_scale == "batch_max":
            r = r / r.max().clamp_min(1e-12)
        gains = torch.where(others, torch.exp2(r) - 1, torch.zeros_like(r))
        c, gain = triangular_histogram(d, torch.stack([others, gains]), self.bins(k), k).double()
        ideal = ideal_dcg(gains)
        ndcg = tie_aware_dcg(c, gain, n - 1, exact) / ideal.clamp_min(1e-300)
        return torch.where(ideal > 0, ndcg, torch.zeros_like(ndcg))

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if len(codes) < 2:  # no retrieval set: nothing to learn from
            zero = codes.sum() * 0
            return {"loss": zero, self.objective: zero.detach()}
        value = self.metric(codes, labels)
        loss = reduce(1 - value, self.reduction).to(codes.dtype)
        return {"loss": loss, self.objective: value.mean().detach().to(codes.dtype)}


@METHODS.register_module(name="talr")
class TALR(DeepMethod):
    """TALR (CVPR 2018): maximise relaxed tie-aware AP or NDCG of Hamming ranking in each batch."""

    family = "listwise"
    _parameter_constraints = dict(_CONSTRAINTS, scale=SCALE, relaxation=[Options("sigmoid", "tanh")])

    def __init__(self, n_bits: int, *, objective: str = "ap", form: str = "exact", n_bins: int | None = None,
                 relevance_scale: str = "count", scale: float = 1.0, reduction: str = "sum",
                 relaxation: str = "sigmoid", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        check_relaxation("talr", relaxation)
        super().__init__(n_bits, loss=dict(type="talr", objective=objective, form=form, n_bins=n_bins,
                                           relevance_scale=relevance_scale, reduction=reduction),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
        self.scale = float(check("talr: scale", scale, SCALE))

    def relax(self, z, progress: float):
        """b = 2 sigmoid(scale z) - 1 (or tanh(scale z))."""
        return super().relax(self.scale * z, progress)

