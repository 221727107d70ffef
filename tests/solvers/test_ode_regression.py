"""The regression example: an ODE block followed by a linear layer learns y = sin(x) on [-5, 5]."""

from __future__ import annotations

import time

import torch
from torch import nn

import neuralsde_fin as nsf

MSE_THRESHOLD = 5e-3  # sin(x) itself has variance 0.5 on [-5, 5]; measured ~1.5e-3 (seed 0)


class Field(nn.Module):
    """f(t, h): an MLP 4 -> 32 -> 32 -> 4 (autonomous)."""

    def __init__(self, state: int = 4, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, state),
        )

    def forward(self, t, h):
        return self.net(h)


def test_ode_block_learns_sine():
    torch.manual_seed(0)
    state = 4
    # Augmented neural ODE (Dupont et al. 2019): x is padded with zeros to 4 channels, since a
    # flow of the line alone is monotone and could not fold it into sin(x).
    block = nsf.ODEBlock(Field(state), 1.0, method="reversible_heun", dt=0.1)
    head = nn.Linear(state, 1)

    def model(x):
        return head(block(torch.cat([x / 5, x.new_zeros(len(x), state - 1)], dim=1)))

    x = torch.linspace(-5, 5, 256).unsqueeze(1)
    y = torch.sin(x)
    opt = torch.optim.Adam([*block.parameters(), *head.parameters()], lr=1e-2)
    start = time.perf_counter()
    for _ in range(300):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    x_test = torch.rand(1000, 1, generator=torch.Generator().manual_seed(1)) * 10 - 5
    with torch.no_grad():
        mse = (model(x_test) - torch.sin(x_test)).pow(2).mean().item()
    print(
        f"sin regression: train MSE {loss.item():.2e}, test MSE {mse:.2e} "
        f"(threshold {MSE_THRESHOLD:.0e}), 300 Adam steps in {seconds:.1f} s, adjoint "
        f"{block.adjoint}"
    )
    assert mse < MSE_THRESHOLD
