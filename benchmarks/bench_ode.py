"""Neural ODE benchmarks against torchdiffeq, side by side in one process with identical weights.

The work: forward + backward of an ODE block h(0) -> h(1) at batch 1024, state 32, vector field
an MLP 32 -> 64 -> 64 -> 32 (tanh), loss mean(h(1)^2), N_STEPS fixed steps of dt = 1 / N_STEPS
(the same step count for both libraries). Medians over interleaved repeats; ratio = peer_s /
ours_s, > 1 means we are faster.

Adjoint cases (ours: nsf.ODEBlock, reversible Heun, adjoint=True, exact discrete gradients with
one evaluation + one VJP per step backwards; peer: torchdiffeq.odeint_adjoint, the continuous
adjoint solved backwards with the same method and step):

- adjoint rh vs tdq euler: equal evaluations per step (1), peer order 1;
- adjoint rh vs tdq midpoint: equal order (2), peer 2 evaluations per step;
- adjoint rh vs tdq rk4: peer order 4, 4 evaluations per step.

Backprop cases (ours: adjoint=False; peer: torchdiffeq.odeint), same scheme where both have it:
rk4 vs rk4 (the same 3/8 rule), reversible Heun vs midpoint, dopri5 vs dopri5 (adaptive, equal
rtol/atol; step counts are each library's own).

Run: ``python benchmarks/bench_ode.py [--repeats 7] [--steps 32] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchdiffeq
from torch import nn

import neuralsde_fin as nsf

BATCH, STATE, WIDTH = 1024, 32, 64


class Field(nn.Module):
    """f(t, h) = MLP(h): 32 -> 64 -> 64 -> 32 with tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(STATE, WIDTH),
            nn.Tanh(),
            nn.Linear(WIDTH, WIDTH),
            nn.Tanh(),
            nn.Linear(WIDTH, STATE),
        )

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (at most 2 here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    func = Field()
    h0 = torch.randn(BATCH, STATE)
    n = args.steps
    dt = 1.0 / n
    ts = torch.tensor([0.0, 1.0])
    opts = {"step_size": dt}

    def run(forward):
        def fn():
            for p in func.parameters():
                p.grad = None
            forward().pow(2).mean().backward()

        return fn

    ours_rh_adj = nsf.ODEBlock(func, 1.0, method="reversible_heun", dt=dt, adjoint=True)
    ours_rh = nsf.ODEBlock(func, 1.0, method="reversible_heun", dt=dt, adjoint=False)
    ours_rk4 = nsf.ODEBlock(func, 1.0, method="rk4", dt=dt)
    ours_dp = nsf.ODEBlock(func, 1.0, method="dopri5", rtol=1e-5, atol=1e-5)

    def tdq_adj(method):
        return lambda: torchdiffeq.odeint_adjoint(func, h0, ts, method=method, options=opts)[-1]

    def tdq(method, **kw):
        return lambda: torchdiffeq.odeint(func, h0, ts, method=method, **kw)[-1]

    cases = [
        ("adjoint rh vs tdq euler", run(lambda: ours_rh_adj(h0)), run(tdq_adj("euler"))),
        ("adjoint rh vs tdq midpoint", run(lambda: ours_rh_adj(h0)), run(tdq_adj("midpoint"))),
        ("adjoint rh vs tdq rk4", run(lambda: ours_rh_adj(h0)), run(tdq_adj("rk4"))),
        ("backprop rk4 vs tdq rk4", run(lambda: ours_rk4(h0)), run(tdq("rk4", options=opts))),
        (
            "backprop rh vs tdq midpoint",
            run(lambda: ours_rh(h0)),
            run(tdq("midpoint", options=opts)),
        ),
        (
            "backprop dopri5 vs tdq dopri5 (tol 1e-5)",
            run(lambda: ours_dp(h0)),
            run(tdq("dopri5", rtol=1e-5, atol=1e-5)),
        ),
    ]

    # Agreement before timing: the same scheme gives the same numbers.
    with torch.no_grad():
        a, b = ours_rk4(h0), torchdiffeq.odeint(func, h0, ts, method="rk4", options=opts)[-1]
        c = torchdiffeq.odeint(func, h0, ts, method="dopri5", rtol=1e-9, atol=1e-9)[-1]
        d = ours_rh(h0)
    calls = [0]
    hook = func.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    nfe = []
    with torch.no_grad():
        for solve in (lambda: ours_dp(h0), tdq("dopri5", rtol=1e-5, atol=1e-5)):
            calls[0] = 0
            solve()
            nfe.append(calls[0])
    hook.remove()
    print(f"# dopri5 at tol 1e-5, forward evaluations: ours {nfe[0]}, torchdiffeq {nfe[1]}")
    print(f"# rk4 ours vs torchdiffeq: max |diff| {(a - b).abs().max().item():.1e} (float32)")
    print(f"# reversible Heun ({n} steps) vs dopri5 1e-9: max |diff| {(d - c).abs().max():.1e}")

    def grads(fn) -> torch.Tensor:
        fn()
        return torch.cat([p.grad.flatten() for p in func.parameters()])

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).abs().max() / b.abs().max()).item()

    g_ours = rel(grads(cases[0][1]), grads(run(lambda: ours_rh(h0))))
    g_mid = rel(grads(cases[1][2]), grads(run(tdq("midpoint", options=opts))))
    print(
        f"# adjoint gradients vs backprop through the same discrete solve (max relative diff): "
        f"ours (reversible Heun) {g_ours:.1e}, torchdiffeq odeint_adjoint midpoint {g_mid:.1e}"
    )

    def time_it(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for _, o, p in cases:  # warm up
        o()
        p()
    res = {name: ([], []) for name, _, _ in cases}
    for _ in range(args.repeats):
        for name, o, p in cases:
            res[name][0].append(time_it(o))
            res[name][1].append(time_it(p))
    print(
        f"# batch {BATCH}, state {STATE}, MLP {WIDTH}x2, t1 = 1, {n} steps, fwd + bwd, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    print("case, ours_s, peer_s, ratio")
    for name, (o, p) in res.items():
        mo, mp = statistics.median(o), statistics.median(p)
        print(f"{name}, {mo:.4f}, {mp:.4f}, {mp / mo:.2f}")


if __name__ == "__main__":
    main()
