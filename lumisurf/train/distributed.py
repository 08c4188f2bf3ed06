"""Data-parallel training of one scene with ``torch.distributed`` (gloo on CPU, nccl on CUDA).

The rule that keeps N ranks equal to one: every rank draws the step's whole batch of ``train.batch_rays``
pixels from the same seeded generator and renders its own contiguous share (``batch_rays / N`` rays).
The per-rank gradients of the mean losses are averaged (one flat all-reduce), so every rank applies the
same update and the parameters never drift apart; losses, PSNR and the per-ray errors the adaptive pixel
samplers learn from are averaged or gathered the same way, and the training clock is the slowest
rank's. A run's
rays therefore depend on its seed and step only, not on N: a checkpoint resumes with any number of ranks.

:data:`SINGLE` is the one-process stand-in; trainers call the same methods whatever N is.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from lumisurf.errors import ConfigError, LumisurfError


class RankLost(LumisurfError):
    """A collective failed: another rank died or the rendezvous broke (never taken for a divergence)."""


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main rank writes checkpoints, logs, pictures and outputs."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The rank's own GPU for a CUDA run (``cuda:LOCAL_RANK``); CPU stays CPU."""
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, n: int) -> slice:
        """This rank's rows of an ``n``-row global batch (equal shares; ``n`` divisible by the world size)."""
        if n % self.world_size:
            raise ConfigError(f"train.batch_rays={n} must be divisible by the {self.world_size} ranks")
        k = n // self.world_size
        return slice(self.rank * k, (self.rank + 1) * k)

    # ------------------------------------------------------------------ collectives (no-ops on one rank)
    @contextmanager
    def _collective(self, what: str):
        """A failed collective (a rank died, the rendezvous broke) raises :class:`RankLost`, naming it."""
        try:
            yield
        except RuntimeError as exc:
            raise RankLost(f"rank {self.rank}: {what} failed ({str(exc).splitlines()[0][:200]})") from None

    def _reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        with self._collective("all-reduce"):
            torch.distributed.all_reduce(t, op=op or torch.distributed.ReduceOp.SUM)
        return t

    def mean_values(self, values: list[float], device: torch.device) -> list[float]:
        """Per-rank numbers averaged over the ranks (NaN on any rank gives NaN)."""
        if not self.enabled:
            return list(values)
        t = self._reduce(torch.tensor(values, dtype=torch.float64, device=device))
        return (t / self.world_size).tolist()

    def max_value(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        return float(
            self._reduce(
                torch.tensor([value], dtype=torch.float64, device=device), torch.distributed.ReduceOp.MAX
            ).item()
        )

    def average_gradients(self, parameters) -> None:
        """Average ``.grad`` over the ranks in one flat all-reduce (the gradients, then one has-a-gradient flag per
        parameter). A parameter keeps ``grad=None`` only when it has none on every rank (as a single rank would:
        Adam skips it), else absent grads count as 0. The grads become views of the reduced buffer."""
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        flags = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=params[0].device)
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [flags]
        )
        self._reduce(flat).div_(self.world_size)
        offset = 0
        for p, has in zip(params, flat[-len(params) :].tolist()):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p) if has > 0 else None
            offset += n

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's equal-sized ``t`` [k, ...] joined in rank order [world_size * k, ...]."""
        if not self.enabled:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        with self._collective("all-gather"):
            torch.distributed.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def broadcast_module(self, module: torch.nn.Module, buffers_only: bool = False) -> None:
        """Rank 0's parameters (and buffers: occupancy grids) on every rank."""
        if not self.enabled:
            return
        tensors = list(module.buffers()) + ([] if buffers_only else [p.data for p in module.parameters()])
        with self._collective("broadcast"):
            for t in tensors:
                torch.distributed.broadcast(t, src=0)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


SINGLE = Distributed()


def from_environment() -> Distributed:
    """The ranks ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK (:data:`SINGLE` without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_name: str, timeout_minutes: float = 10.0) -> Distributed:
    """Join the process group ``torchrun`` set up (gloo for CPU runs, nccl for CUDA ones); one rank: no-op."""
    dist = from_environment()
    if not dist.enabled or torch.distributed.is_initialized():
        return dist
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(dist.local_rank)
    timeout = datetime.timedelta(minutes=timeout_minutes)
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    return dist


def shutdown(dist: Distributed) -> None:
    if dist.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
