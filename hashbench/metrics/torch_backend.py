"""The same per-query group sums as :mod:`hashbench.metrics.hamming`, computed with torch.

Used for CUDA tensors (and, on request, for CPU tensors, which is how the tests check that both
paths agree). The GPU has arithmetic to spare, so this path is dense: for a chunk of c queries it
forms the (c, N) distance matrix as ``(bits - q @ x.T) / 2`` on ±1 codes (exact integers in
float32 for up to 2**24 bits), the (c, N) relevance, then scatter-adds both into per-distance
sums. Ranked lists for the ``index`` and ``random`` policies come from a top-k over an integer
key ``distance * N + index`` (or ``distance * 2**32 + random key``), which is the same order
as the CPU kernel's counting sort.
"""
from __future__ import annotations


_MASK32 = 0xFFFFFFFF
LANES = 32  # copies of each distance bin that scatter-adds spread over (see chunk_stats)


def _mix32(x):
    # same bijection as hashbench.metrics.hamming._mix32, exact in int64 (x < 2**32, odd
    # constants < 2**31, so no product overflows)
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK32
    x = x ^ (x >> 16)
    return x


def signed_codes(bits):
    """Bool bits (n, b) as float32 ±1, the form the distance matmul wants."""
    import torch

    return bits.to(torch.float32) * 2.0 - 1.0


def default_relevance(q_labels, d_labels):
    """Shared-label counts (float64) and "shares at least one label" (bool), both (c, N)."""
    import torch

    r = (q_labels.to(torch.float32) @ d_labels.to(torch.float32).T).round_().to(torch.float64)
    return r, r > 0


def chunk_stats(q_signed, d_signed, q_labels, d_labels, relevance, *, n_groups, ktop, kn,
                random, seed, q0):
    """Group sums for one chunk of queries, returned as numpy arrays (see ``group_stats``).

    q_signed (c, b), d_signed (N, b): ±1 float32 codes on one device. ``relevance(ql, dl)``
    returns graded (c, N) and binary (c, N) relevance. ktop: length of the ranked lists for the
    index / random policies (0: none); kn: how many ideal gains to keep for IDCG (0: none).
    """
    import torch

    device = q_signed.device
    n_bits = q_signed.shape[1]
    dist = torch.round((n_bits - q_signed @ d_signed.T) * 0.5).to(torch.int64)
    c, n_db = dist.shape
    r, b = relevance(q_labels, d_labels)
    r = torch.as_tensor(r, device=device).to(torch.float64)
    b = torch.as_tensor(b, device=device) > 0
    gain = torch.exp2(r) - 1.0

    # A row's N items all land in its n_groups (bits + 1) bins: on the GPU the atomic adds then
    # queue on a few addresses, which dominated evaluate's GPU time. Each bin gets LANES
    # copies, item j adding to copy j % LANES, and the copies are summed afterwards. (With the
    # default relevance every sum is of integers in int64/float64, exact in any order.)
    slot = dist * LANES + torch.arange(n_db, device=device) % LANES

    def per_group(values, dtype):
        out = torch.zeros(c, n_groups * LANES, dtype=dtype, device=device)
        return out.scatter_add_(1, slot, values.to(dtype)).view(c, n_groups, LANES).sum(dim=2)

    stats = {
        "n": per_group(torch.ones_like(dist), torch.int64),
        "rel": per_group(b, torch.int64),
        "pos": per_group(r > 0, torch.int64),
        "gsum": per_group(r, torch.float64),
        "gain": per_group(gain, torch.float64),
        "n_rel": b.sum(dim=1),
        "n_pos": (r > 0).sum(dim=1),
    }
    if kn > 0:
        stats["ideal"] = torch.topk(gain, min(kn, n_db), dim=1, sorted=True).values
    if ktop > 0:
        index = torch.arange(n_db, device=device, dtype=torch.int64)
        if random:
            queries = torch.arange(q0, q0 + c, device=device, dtype=torch.int64)
            qseed = _mix32(_mix32(torch.tensor(seed, device=device, dtype=torch.int64)) ^ queries)
            key = dist * (1 << 32) + _mix32(qseed[:, None] ^ index[None, :])
        else:
            key = dist * n_db + index[None, :]
        k = min(ktop, n_db)
        if k < n_db:
            order = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
        else:
            order = torch.argsort(key, dim=1)
        stats["top_r"] = r.gather(1, order)
        stats["top_b"] = b.gather(1, order)
    return {name: value.cpu().numpy() for name, value in stats.items()}

