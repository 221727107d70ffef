"""Brownian increments: ``nsf.VirtualBrownianTree`` against torchsde's BrownianInterval.

Prints ``case, ours_s, peer_s, ratio`` (medians over interleaved repeats, ratio = peer / ours,
so > 1 means we are faster). Cases, all for shape (4096, 8) over ts = linspace(0, 1, 253):

- ``fwd_rev_defaults``: a tree a user builds with its defaults (``tol=None``: the leaves follow
  the first grid it is asked for), the whole grid forward, then the grid again in reverse
  order in chunks of 64 steps (the adjoint's pattern; ``ADJOINT_CHUNK_STEPS`` of the solver).
- ``fwd_rev``: the same with ``VirtualBrownianTree(..., tol=dt)``, as ``sdeint`` builds it. Peer:
  ``torchsde.BrownianInterval(levy_area_approximation="none", dt=dt)`` (with the step-size
  hint its docstring advises for fixed-step solvers) queried step by step forward then in
  reverse (the way torchsde's own solvers and adjoint query it).
- ``fwd``: the forward pass alone.
- ``fwd_rev_4096_leaves``: as ``fwd_rev`` with 4096 leaves (the default before it followed
  the grid): every grid time is then a sub-leaf bridge and costs a walk below the resolution.
- ``fwd_rev_step``: ours also queried step by step, ``bm(s, t)`` (252 calls each way), as
  torchsde's solvers query: served from the tree's block cache of nodes.
- ``fwd_rev_step_increments``: the same through ``bm.increments`` on two-point grids.
- ``fwd_rev_float64``: ``fwd_rev`` in float64 (the peer in float64 too).
- ``fwd_rev_vs_peer_without_hint``: ``fwd_rev`` against the peer built without ``dt=`` (what
  ``torchsde.sdeint`` builds when it is given no ``bm``).
- ``sample_a_share``: ours ``fwd_rev`` against torchsde sampling 4096 paths x 252 steps of the
  issue's neural SDE (state 32, noise 8, MLPs 64x2 with time input, reversible Heun): the
  ratio is torchsde's sampling time over ours; the target "<= 10% of (a) at 2x over torchsde"
  means ratio >= 20.

Each case is printed twice: wall-clock seconds, then ``<case>_cpu``, process CPU seconds (steadier
than wall time while other jobs share the machine).
Run: ``python benchmarks/bench_brownian.py [--repeats 5] [--threads 2] [--skip-sample]``.
On a shared, oversubscribed machine ``--threads 1`` avoids OpenMP barrier stalls that inflate
the many small ops of the peer (and of ours when queried step by step).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchsde

from neuralsde_fin import VirtualBrownianTree
from neuralsde_fin._brownian import _kernels

SHAPE = (4096, 8)
N_STEPS = 252
CHUNK = 64


def _ours_step(ts: torch.Tensor, dtype, tol) -> None:
    """bm(s, t) one step at a time, forward then in reverse: how torchsde's solvers query."""
    bm = VirtualBrownianTree(0.0, 1.0, SHAPE, seed=0, tol=tol, dtype=dtype)
    tl = list(ts.unbind(0))  # 0-dim tensors, as torchsde's solvers pass the times
    for i in range(len(tl) - 1):
        bm(tl[i], tl[i + 1])
    for i in reversed(range(len(tl) - 1)):
        bm(tl[i], tl[i + 1])


def _ours(ts: torch.Tensor, dtype, tol, chunk: int | None) -> None:
    bm = VirtualBrownianTree(0.0, 1.0, SHAPE, seed=0, tol=tol, dtype=dtype)
    n = len(ts) - 1
    if chunk is None:
        bm.increments(ts)
        chunk = CHUNK
    else:
        for lo in range(0, n, chunk):
            bm.increments(ts[lo : min(lo + chunk, n) + 1])
    for hi in range(n, 0, -chunk):
        bm.increments(ts[max(hi - chunk, 0) : hi + 1])


def _ours_fwd(ts: torch.Tensor, dtype, tol) -> None:
    VirtualBrownianTree(0.0, 1.0, SHAPE, seed=0, tol=tol, dtype=dtype).increments(ts)


def _peer(ts: torch.Tensor, dtype, reverse: bool = True, hint: bool = True) -> None:
    # hint: tell BrownianInterval the step size (dt=), as its docstring advises for fixed-step
    # solvers; torchsde.sdeint's default BrownianInterval has no hint and is ~7x slower here
    extra = {"dt": float(ts[1] - ts[0])} if hint else {}
    bi = torchsde.BrownianInterval(0.0, 1.0, size=SHAPE, dtype=dtype, entropy=0,
                                   levy_area_approximation="none", **extra)
    tl = ts.tolist()
    for i in range(len(tl) - 1):
        bi(tl[i], tl[i + 1])
    if reverse:
        for i in reversed(range(len(tl) - 1)):
            bi(tl[i], tl[i + 1])


class _MLP(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int, width: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d_in + 1, width), torch.nn.SiLU(), torch.nn.Linear(width, width),
            torch.nn.SiLU(), torch.nn.Linear(width, d_out))

    def forward(self, t, y):
        return self.net(torch.cat([t.expand(y.shape[0], 1), y], dim=1))


class _NeuralSDE(torch.nn.Module):
    sde_type, noise_type = "stratonovich", "general"

    def __init__(self, state: int = 32, noise: int = 8) -> None:
        super().__init__()
        self.state, self.noise = state, noise
        self.drift, self.diff = _MLP(state, state), _MLP(state, state * noise)

    def f(self, t, y):
        return self.drift(t, y)

    def g(self, t, y):
        return torch.tanh(self.diff(t, y)).view(-1, self.state, self.noise)


def _torchsde_sample(sde, y0, ts) -> None:
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(y0.shape[0], 8), entropy=0,
                                   levy_area_approximation="none", dt=1 / N_STEPS)
    with torch.no_grad():
        torchsde.sdeint(sde, y0, ts, bm=bm, method="reversible_heun", dt=1 / N_STEPS)


def _median_pair(ours, peer, repeats: int) -> tuple[float, float, float, float]:
    """Medians of (ours wall, peer wall, ours CPU, peer CPU) seconds over interleaved repeats."""
    ours(), peer()  # warm-up
    runs: list[list[float]] = [[], [], [], []]
    for _ in range(repeats):
        for k, fn in enumerate((ours, peer)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs[k].append(time.perf_counter() - t0)
            runs[k + 2].append(time.process_time() - c0)
    return tuple(statistics.median(r) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-sample", action="store_true", help="skip sample_a_share")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (at most 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for dtype in (torch.float32, torch.float64):
        _kernels.warmup(dtype)  # build (or torch.compile) the kernels once, outside the timings
    ts32 = torch.linspace(0, 1, N_STEPS + 1)
    ts64 = torch.linspace(0, 1, N_STEPS + 1, dtype=torch.float64)
    dt = 1 / N_STEPS
    f32, f64 = torch.float32, torch.float64
    cases = {
        "fwd_rev_defaults": (lambda: _ours(ts32, f32, None, None), lambda: _peer(ts32, f32)),
        "fwd_rev": (lambda: _ours(ts32, f32, dt, None), lambda: _peer(ts32, f32)),
        "fwd": (lambda: _ours_fwd(ts32, f32, dt), lambda: _peer(ts32, f32, reverse=False)),
        "fwd_rev_4096_leaves": (lambda: _ours(ts32, f32, 1 / 4096, None),
                                lambda: _peer(ts32, f32)),
        "fwd_rev_step": (lambda: _ours_step(ts32, f32, dt), lambda: _peer(ts32, f32)),
        "fwd_rev_step_increments": (lambda: _ours(ts32, f32, dt, 1), lambda: _peer(ts32, f32)),
        "fwd_rev_float64": (lambda: _ours(ts64, f64, dt, None), lambda: _peer(ts64, f64)),
        "fwd_rev_vs_peer_without_hint": (lambda: _ours(ts32, f32, dt, None),
                                         lambda: _peer(ts32, f32, hint=False)),
    }
    if not args.skip_sample:
        torch.manual_seed(0)
        sde = _NeuralSDE()
        y0 = torch.randn(SHAPE[0], 32) * 0.1
        cases["sample_a_share"] = (lambda: _ours(ts32, f32, dt, None),
                                   lambda: _torchsde_sample(sde, y0, ts32))
    print("case, ours_s, peer_s, ratio", flush=True)
    for name, (ours, peer) in cases.items():
        a, b, ca, cb = _median_pair(ours, peer, args.repeats)
        print(f"{name}, {a:.4f}, {b:.4f}, {b / a:.2f}", flush=True)
        print(f"{name}_cpu, {ca:.4f}, {cb:.4f}, {cb / ca:.2f}", flush=True)


if __name__ == "__main__":
    main()
