"""Data-parallel training across processes (`torchrun --nproc_per_node=N -m anode_native train ...`).

Each rank holds a full replica of the model wrapped in `DistributedDataParallel` and solves the
ODE for its own shard of every global batch; DDP averages the gradients, so every replica takes
the same optimizer step. With an adaptive solver the ranks may take different numbers of steps
(the error norm is taken over the rank's own shard); that is fine, only gradients are synced.
Both gradient paths work: direct backpropagation (the fused ops' autograd) and the adjoint (its
autograd Function takes the parameters as inputs, so DDP's gradient hooks fire on them).

Backends: gloo on the CPU, NCCL on GPUs (rank r uses cuda:LOCAL_RANK). Metrics (loss, accuracy,
NFE) are reduced across ranks; logs, checkpoints, results and figures are written by rank 0 only.
A solver failure in a forward pass or an evaluation on any rank ends training on every rank at
the same point (a flag is reduced before backward and before the evaluation sums; the failing
rank prints its message to stderr). A failure inside the adjoint backward of one rank cannot be
seen by the others before their gradient all-reduce, so that case ends with the process group's
timeout (30 minutes).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Iterator, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler


@dataclasses.dataclass
class DistContext:
    """Where this process stands: rank, world size, and the device it trains on."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> torch.device:
        """The config's device for this rank: `cuda` becomes cuda:LOCAL_RANK under DDP."""
        if self.enabled and device == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device(device)

    # -- collectives (no-ops in a single process) ---------------------------------------------
    def sum(self, values: Sequence[float]) -> List[float]:
        """Element-wise sum of `values` over ranks (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
        return buf.cpu().tolist()

    def failed_ranks(self, failed: bool) -> List[int]:
        """The ranks on which `failed` is True, known to every rank."""
        if not self.enabled:
            return [0] if failed else []
        flags = self.sum([1.0 if (failed and r == self.rank) else 0.0 for r in range(self.world_size)])
        return [r for r, f in enumerate(flags) if f > 0]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def replica_divergence(self, model: nn.Module) -> float:
        """max |w_rank - w_other| over every parameter and pair of ranks (0.0 when in sync)."""
        if not self.enabled:
            return 0.0
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        flat = flat.to(self._comm_device())
        hi, lo = flat.clone(), flat.clone()
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        return float((hi - lo).max().item()) if flat.numel() else 0.0

    # -- models and data ---------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` in DistributedDataParallel (rank 0's parameters broadcast to all); unchanged
        in a single process."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def local_batch_size(self, batch_size: int) -> int:
        """The per-rank share of a global batch; the global batch must split evenly."""
        if batch_size % self.world_size:
            from .config import ConfigError  # config imports the trainer, which imports this module
            raise ConfigError(f"config key 'training.batch_size' ({batch_size}) must be divisible by "
                              f"the number of processes ({self.world_size}): it is the global batch")
        return batch_size // self.world_size

    def train_loader(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        """Rank r's shard of every global batch of `batch_size`. With shuffle off the global
        batches are those of a single process (rank r takes items r, r + N, ...); the last one
        is padded by repeating items so every rank has the same number of batches."""
        from torch.utils.data import DistributedSampler
        sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank,
                                     shuffle=shuffle, seed=seed, drop_last=False)
        return DataLoader(dataset, batch_size=self.local_batch_size(batch_size), sampler=sampler)

    def eval_loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        """Rank r evaluates items r, r + N, ... (no padding: sums reduced over ranks are exact)."""
        return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), self))


class ShardSampler(Sampler):
    """Indices rank, rank + world_size, ... of range(n), in order."""

    def __init__(self, n: int, ctx: DistContext):
        self.indices = list(range(ctx.rank, n, ctx.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


SINGLE = DistContext()


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when launched as a plain process)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_distributed(device: str, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT); a single-process context when WORLD_SIZE is unset or 1."""
    world = launched_world_size()
    if world <= 1:
        return SINGLE
    import torch.distributed as dist
    from .config import ConfigError
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda:"):
        raise ConfigError("under torchrun use --device cuda (each process takes cuda:LOCAL_RANK), "
                          f"not {device!r}")
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process with LOCAL_RANK {local_rank} has no GPU of its own "
                              f"({torch.cuda.device_count()} visible): use --nproc_per_node "
                              f"<= {torch.cuda.device_count()}")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank, world, local_rank, backend)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


__all__ = ["DistContext", "ShardSampler", "SINGLE", "unwrap", "init_distributed",
           "shutdown_distributed", "launched_world_size"]
