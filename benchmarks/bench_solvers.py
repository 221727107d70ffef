"""Solver benchmarks against torchsde, side by side in one process with identical weights.

Cases (medians over interleaved repeats; ratio = peer_s / ours_s, > 1 means we are faster):

(a) sampling: 4096 paths x 252 steps, state 32, noise 8 (general), drift and diffusion MLPs
    64 wide x 2 hidden layers with time input, reversible Heun, dt = 1/252, no grad; ours
    four times: the default mode (NEURALSDE_FIN_COMPILE as in the environment; unset, a solve
    this large takes the native sampling loop of ``_solvers/_native_step.py`` on the CPU), the
    eager fast path (NEURALSDE_FIN_COMPILE=0), compiled mode (NEURALSDE_FIN_COMPILE=1: on the
    CPU the native loop), and compiled mode with the ``torch.compile``-d step instead (what
    other devices run); kernel builds and compilation timed separately and excluded.
(b) training step: forward + adjoint backward at batch 1024 (torchsde: sdeint_adjoint with
    method="reversible_heun", adjoint_method="adjoint_reversible_heun"); ours twice: eager, and
    with the opt-in compiled forward and backward steps (NEURALSDE_FIN_COMPILE=1).
(d) efficiency: achieved GFLOP/s (matmul FLOPs of the vector fields) against this machine's
    fp32 matmul peak, measured in the same run with a large torch.mm.

Each library uses its own Brownian motion for timing (ours: VirtualBrownianTree; torchsde:
BrownianInterval with the step size hint dt=, plus one (a) row without it, as torchsde.sdeint
builds it by default); before timing, the outputs are checked to agree on shared increments.
Run: ``python benchmarks/bench_solvers.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torchsde

import neuralsde_fin as nsf
from neuralsde_fin._solvers import MLPDriftDiffusion, _native_step

STATE, NOISE, WIDTH, DEPTH = 32, 8, 64, 2
N_STEPS = 252
DT = 1.0 / N_STEPS


class GridBrownian:
    """Replays fixed increments on the solver grid; used for the agreement check."""

    levy_area_approximation = "none"

    def __init__(self, grid: torch.Tensor, incr: torch.Tensor) -> None:
        self.grid, self.incr = grid, incr
        self.shape, self.dtype, self.device = tuple(incr.shape[1:]), incr.dtype, incr.device
        self.w = torch.cat([torch.zeros_like(incr[:1]), incr.cumsum(0)])

    def _i(self, t) -> int:
        return int(torch.argmin((self.grid - torch.as_tensor(t, dtype=self.grid.dtype)).abs()))

    def __call__(self, s, t=None):
        if t is None:
            s, t = self.grid[0], s
        return self.w[self._i(t)] - self.w[self._i(s)]

    def increments(self, ts):
        i, j = self._i(ts[0]), self._i(ts[-1])
        return self.incr[i:j]


def flops_per_eval(batch: int) -> int:
    """Matmul FLOPs of one drift + diffusion evaluation (2 * batch * in * out per layer)."""
    macs = 0
    for out in (STATE, STATE * NOISE):
        macs += (STATE + 1) * WIDTH + (DEPTH - 1) * WIDTH * WIDTH + WIDTH * out
    return 2 * batch * macs


def matmul_peak(repeats: int = 3, n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e9


def our_bm(batch: int, seed: int):
    if hasattr(nsf, "VirtualBrownianTree"):
        return None  # sdeint builds the tree from the seed
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 1, N_STEPS + 1)
    return GridBrownian(grid, torch.randn(N_STEPS, batch, NOISE, generator=gen) * DT**0.5)


def check_agreement(model: MLPDriftDiffusion, peer: torch.nn.Module) -> float:
    batch = 64
    gen = torch.Generator().manual_seed(1)
    grid = torch.linspace(0, 1, N_STEPS + 1)
    bm = GridBrownian(grid, torch.randn(N_STEPS, batch, NOISE, generator=gen) * DT**0.5)
    y0 = torch.randn(batch, STATE, generator=gen)
    with torch.no_grad():
        ours = nsf.sdeint(model, y0, grid, bm=bm, dt=DT)
        theirs = torchsde.sdeint(peer, y0, grid, bm=bm, method="reversible_heun", dt=DT)
    return (ours - theirs).abs().max().item()


def time_it(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MLPDriftDiffusion(STATE, NOISE, WIDTH, DEPTH)
    peer = model.unfused()
    err = check_agreement(model, peer)
    print(
        f"# agreement with torchsde on shared increments (float32, 252 steps): max |diff| {err:.2e}"
    )
    if err > 1e-3:
        raise SystemExit("outputs disagree; not timing")
    ts = torch.linspace(0, 1, N_STEPS + 1)
    bm_note = "VirtualBrownianTree" if hasattr(nsf, "VirtualBrownianTree") else "replayed randn"
    print(f"# ours: Brownian = {bm_note}; torchsde: BrownianInterval(dt=1/252)")

    # (a) sampling
    compile_flag = os.environ.get("NEURALSDE_FIN_COMPILE", "")
    batch = 4096
    y0 = torch.randn(batch, STATE)
    bm_a = our_bm(batch, 0)

    def ours_a():
        with torch.no_grad():
            nsf.sdeint(model, y0, ts, bm=bm_a, dt=DT, seed=0)

    def ours_ac():  # the same with the opt-in compiled sampling step (NEURALSDE_FIN_COMPILE=1)
        os.environ["NEURALSDE_FIN_COMPILE"] = "1"
        try:
            ours_a()
        finally:
            os.environ["NEURALSDE_FIN_COMPILE"] = compile_flag

    def ours_ae():  # the eager fast path (NEURALSDE_FIN_COMPILE=0)
        os.environ["NEURALSDE_FIN_COMPILE"] = "0"
        try:
            ours_a()
        finally:
            os.environ["NEURALSDE_FIN_COMPILE"] = compile_flag

    def ours_ai():  # compiled mode with the torch.compile-d step instead of the native CPU loop
        _native_step.ENABLED = False
        try:
            ours_ac()
        finally:
            _native_step.ENABLED = True

    # torchsde at its best: BrownianInterval told the step size (dt=), as its docstring advises
    # for fixed-step solvers; without the hint (what torchsde.sdeint builds when bm is None) its
    # Brownian queries alone take about 0.2 s more forward and 1.3 s more forward + reverse here.
    def peer_a():
        with torch.no_grad():
            bm = torchsde.BrownianInterval(0.0, 1.0, size=(batch, NOISE), entropy=0, dt=DT)
            torchsde.sdeint(peer, y0, ts, bm=bm, method="reversible_heun", dt=DT)

    def peer_a_default():
        with torch.no_grad():
            bm = torchsde.BrownianInterval(0.0, 1.0, size=(batch, NOISE), entropy=0)
            torchsde.sdeint(peer, y0, ts, bm=bm, method="reversible_heun", dt=DT)

    # (b) forward + adjoint backward
    batch_b = 1024
    y0b = torch.randn(batch_b, STATE)
    bm_b = our_bm(batch_b, 0)

    def ours_b():
        ys = nsf.sdeint(model, y0b, ts, bm=bm_b, dt=DT, adjoint=True, seed=0)
        ys.pow(2).mean().backward()

    def peer_b():
        bm = torchsde.BrownianInterval(0.0, 1.0, size=(batch_b, NOISE), entropy=0, dt=DT)
        ys = torchsde.sdeint_adjoint(
            peer,
            y0b,
            ts,
            bm=bm,
            method="reversible_heun",
            adjoint_method="adjoint_reversible_heun",
            dt=DT,
        )
        ys.pow(2).mean().backward()

    def ours_bc():  # the same with the compiled forward and backward steps
        os.environ["NEURALSDE_FIN_COMPILE"] = "1"
        try:
            ours_b()
        finally:
            os.environ["NEURALSDE_FIN_COMPILE"] = compile_flag

    t0 = time.perf_counter()
    ours_ac()
    print(f"# (a) compiled step: first call (kernel build) {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    ours_ai()
    print(f"# (a) torch.compile step: first call (compilation) {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    ours_bc()
    print(f"# (b) compiled steps: first call (compilation) {time.perf_counter() - t0:.1f} s")
    for fn in (ours_a, peer_a, peer_a_default, ours_b, peer_b):  # warm up
        fn()
    ours_ae()
    keys = ("ours_a", "ours_ae", "ours_ac", "ours_ai", "peer_a", "peer_a_default", "ours_b",
            "ours_bc", "peer_b")
    fns = dict(zip(keys, (ours_a, ours_ae, ours_ac, ours_ai, peer_a, peer_a_default, ours_b,
                          ours_bc, peer_b)))
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    peaks = []
    for _ in range(args.repeats):
        for k in keys:
            w, c = time_it(fns[k])
            wall[k].append(w)
            cpu[k].append(c)
        peaks.append(matmul_peak(1))
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    peak = statistics.median(peaks)
    print(f"# {args.threads} thread(s), {args.repeats} interleaved repeats, medians")
    print("case, ours_s, peer_s, ratio")
    for label, a, b in (
        ("(a) sample 4096x252 default mode", "ours_a", "peer_a"),
        ("(a) sample 4096x252 eager (NEURALSDE_FIN_COMPILE=0)", "ours_ae", "peer_a"),
        ("(a) sample 4096x252 compiled step", "ours_ac", "peer_a"),
        ("(a) sample 4096x252 torch.compile step (native loop off)", "ours_ai", "peer_a"),
        ("(a) default mode vs torchsde without the dt hint", "ours_a", "peer_a_default"),
        ("(a) eager vs torchsde without the dt hint", "ours_ae", "peer_a_default"),
        ("(b) fwd+adjoint 1024x252", "ours_b", "peer_b"),
        ("(b) fwd+adjoint 1024x252 compiled steps", "ours_bc", "peer_b"),
    ):
        print(f"{label} wall, {med[a]:.3f}, {med[b]:.3f}, {med[b] / med[a]:.2f}")
        print(f"{label} cpu, {cmed[a]:.3f}, {cmed[b]:.3f}, {cmed[b] / cmed[a]:.2f}")
    fa = (N_STEPS + 1) * flops_per_eval(batch)
    # ours: forward N+1 evaluations; backward N+1 evaluations + N+1 VJPs (2 evaluations' FLOPs)
    fb_ours = (N_STEPS + 1) * 4 * flops_per_eval(batch_b)
    # torchsde: forward N+1; backward 2N evaluations + N VJPs
    fb_peer = ((N_STEPS + 1) + 4 * N_STEPS) * flops_per_eval(batch_b)
    print(f"# (d) fp32 matmul peak {peak:.1f} GFLOP/s (torch.mm 2048^2, median)")
    for name, fl, key in (
        ("(a) ours, default mode", fa, "ours_a"),
        ("(a) ours, eager", fa, "ours_ae"),
        ("(a) ours, compiled step", fa, "ours_ac"),
        ("(a) ours, torch.compile step", fa, "ours_ai"),
        ("(a) torchsde", fa, "peer_a"),
        ("(b) ours", fb_ours, "ours_b"),
        ("(b) ours, compiled steps", fb_ours, "ours_bc"),
        ("(b) torchsde", fb_peer, "peer_b"),
    ):
        g = fl / med[key] / 1e9
        gc = fl / cmed[key] / 1e9 / args.threads
        print(
            f"# (d) {name}: {fl / 1e9:.1f} GFLOP, {g:.1f} GFLOP/s wall = {100 * g / peak:.0f}% "
            f"of peak; {gc:.1f} GFLOP/s per CPU-second per thread"
        )


if __name__ == "__main__":
    main()
