"""Training over several processes (GPUs, nodes) with torch DDP, started by ``torchrun``.

    torchrun --nproc-per-node=8 -m hashbench.cli run methods=dsrh launcher=pytorch
    torchrun --nnodes=2 --node-rank=R --master-addr=HOST --nproc-per-node=8 -m hashbench.cli run ... launcher=pytorch

``launcher=pytorch`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group: NCCL with one GPU per process
(``cuda:LOCAL_RANK``) on CUDA, gloo on the CPU. ``launcher=none`` is one process.

What distribution means for hashing losses: DSRH ranks every in-batch triplet, so the triplets
must be formed over the *global* batch, not each process's shard. :meth:`World.gather_batch`
all-gathers the relaxed codes (with gradients: ``torch.distributed.nn.functional.all_gather``)
and the labels, and every process computes the loss on the global batch (see
:func:`hashbench.train.train_deep` for why the gradients then equal one process's). Each
process computes the whole (B, B, B) triplet tensor of the global batch — the loss is cheap next
to the backbone (``benchmarks/train_speed.py``), and it keeps every loss exact without asking
losses to split their anchors.
"""
from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass, field

import torch

from hashbench.errors import HashbenchError

LAUNCHERS = ("none", "pytorch")
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Recent torch marks the autograd-aware all_gather deprecated in favour of the private
# torch.distributed._functional_collectives; the public one still works (and its backward sums
# over ranks, which train_deep relies on), so keep it and keep its warning out of every run.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning)


@dataclass(frozen=True)
class World:
    """The processes of one training run, as seen from this one.

    Attributes
    ----------
    rank, world_size, local_rank : int
        This process's global index, the number of processes, its index on its node.
    device : torch.device
        Where this process trains (``cuda:LOCAL_RANK`` under ``launcher=pytorch`` on CUDA).
    launcher : str
        ``none`` or ``pytorch``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    launcher: str = "none"

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes results and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (no-op for one process)."""
        if self.distributed:
            torch.distributed.barrier()

    def gather_batch(self, codes: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, tuples=None) -> tuple:
        """The global batch: every process's ``codes`` (b, K), ``labels`` (b, C), training-set rows
        ``indices`` (b,) and explicit ``tuples`` (or None), in rank order.

        Returns (W*b, K) codes — differentiable: the gradient of each process's rows flows back
        to that process (summed over the processes that computed a loss on them) — then the (W*b, ...)
        labels and rows, and the tuples of every process with their rows shifted to the global
        batch. Every process must pass the same batch size (the trainer drops ragged last
        batches); tuple counts may differ.
        """
        if not self.distributed:
            return codes, labels, indices, tuples
        from torch.distributed.nn.functional import all_gather

        codes = torch.cat(all_gather(codes.contiguous()), dim=0)
        labels, indices = (self._gather(t) for t in (labels, indices))
        if tuples is not None:
            tuples = self._gather_tuples(tuples, len(codes) // self.world_size)
        return codes, labels, indices, tuples

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(t) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, t.contiguous())
        return torch.cat(gathered, dim=0)

    def _gather_tuples(self, tuples, local: int):
        from hashbench.sampling import Tuples

        count = torch.tensor([len(tuples)], device=tuples.index.device)
        counts = self._gather(count).tolist()  # once per step: a few bytes
        most = max(counts)
        pad = most - len(tuples)
        index = torch.cat([tuples.index, tuples.index.new_zeros(pad, 3)]) + self.rank * local
        weight = torch.cat([tuples.weight, tuples.weight.new_zeros(pad)])
        index, weight = self._gather(index), self._gather(weight)
        keep = torch.cat([torch.arange(n, device=index.device) + r * most for r, n in enumerate(counts)])
        return Tuples(index[keep], weight[keep])

    def all_gather_object(self, obj) -> list:
        """``obj`` of every process, in rank order (picklable objects; once per epoch, not per step)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group (end of a distributed run)."""
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_distributed(launcher: str, device: str = "auto", *, timeout_s: float = 1800) -> World:
    """Join the run's processes as ``launcher`` says; returns this process's :class:`World`.

    ``none``: one process on ``device`` (``auto``/``cpu``/``cuda``/``cuda:N``). ``pytorch``: the
    torchrun environment must be set; on CUDA (``device`` auto or cuda) each process takes
    ``cuda:LOCAL_RANK`` and NCCL, otherwise the CPU and gloo. Calling it again in a process that
    has already joined a group returns that group's world.
    """
    from hashbench.device import resolve_device

    if launcher not in LAUNCHERS:
        raise HashbenchError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    if launcher == "none":
        return World(device=resolve_device(device))
    missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise HashbenchError(
            f"launcher=pytorch needs torchrun's environment, but {', '.join(missing)} is not set; start with "
            "`torchrun --nproc-per-node=N -m hashbench.cli run ... launcher=pytorch`")
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    where = resolve_device(device)
    if where.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise HashbenchError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices here; "
                                 "use --nproc-per-node <= the GPU count")
        where = torch.device("cuda", local_rank)
        torch.cuda.set_device(where)
    else:
        # A CPU (gloo) run has no use for the GPUs, and must not see them: with CUDA visible,
        # mmengine's logger indexes CUDA_VISIBLE_DEVICES by LOCAL_RANK, which fails on a machine
        # with fewer GPUs than processes. (Takes effect while CUDA is not initialised yet.)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    # torch's own init rather than mmengine.dist.init_dist: mmengine 0.10.7's pytorch launcher
    # calls torch.cuda.set_device unconditionally (no CPU/gloo runs) and switches the whole
    # process to the 'spawn' start method, which would also slow every DataLoader worker start.
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if where.type == "cuda" else "gloo",
                                             rank=rank, world_size=world_size,
                                             timeout=datetime.timedelta(seconds=timeout_s))
    return World(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                 local_rank=local_rank, device=where, launcher=launcher)
