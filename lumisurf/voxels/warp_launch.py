"""Launching a tile kernel on both CPU cores: Warp runs one CPU launch on one thread (releasing the GIL), so a
launch is split into interleaved tile sets run concurrently, each part writing its own output buffers.
On CUDA a launch stays one launch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_WARM: set = set()


def parts_for(device: torch.device, n_tiles: int) -> int:
    """Threads to split a launch over: torch's intra-op thread count on CPU, one launch on CUDA."""
    return 1 if device.type != "cpu" else max(1, min(torch.get_num_threads(), n_tiles))


def split_launch(kernel, n_tiles: int, device: torch.device, parts: int, inputs) -> None:
    """Launch ``kernel`` over ``n_tiles`` tiles as ``parts`` interleaved launches (tile ``k``, ``k + parts``,
    ...), concurrent on CPU threads; ``inputs(k)`` are part ``k``'s inputs, without the trailing stride and
    offset the kernel takes last."""
    import warp as wp

    global _POOL, _POOL_SIZE
    wdev = wp.device_from_torch(device)
    run = lambda k: wp.launch(
        kernel,
        dim=(n_tiles - k + parts - 1) // parts,
        device=wdev,  # noqa: E731
        inputs=inputs(k) + [parts, k],
    )
    if parts == 1 or kernel.key not in _WARM:  # the first launch loads the module: not from two threads
        for k in range(parts):
            run(k)
        _WARM.add(kernel.key)
        return
    if _POOL is None or parts > _POOL_SIZE:
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="lumisurf-warp"), parts
    for f in [_POOL.submit(run, k) for k in range(parts)]:
        f.result()
