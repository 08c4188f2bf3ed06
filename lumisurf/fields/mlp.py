"""The one plain-MLP builder of the package (the SDF MLP, with its geometric init and skip, is its own)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(dims: Sequence[int], weight_norm: bool = False, relu_last: bool = False) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ... -> dims[-1]`` with ReLU between them.

    ``relu_last`` adds a ReLU after the last layer too (a trunk feeding other layers); ``weight_norm`` wraps
    every linear layer (Salimans & Kingma). Linear layers sit at even indices, so ``mlp(...)[-1]`` is the
    output layer unless ``relu_last``.
    """
    if len(dims) < 2:
        raise ValueError(f"an MLP needs an input and an output size, got dims={list(dims)}")
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        lin = nn.Linear(dims[i], dims[i + 1])
        mods.append(nn.utils.parametrizations.weight_norm(lin) if weight_norm else lin)
        if i < len(dims) - 2 or relu_last:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)
