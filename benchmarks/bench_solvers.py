"""Sampling and training solves that users run, against torchsde, side by side in one process.

Cases (medians over interleaved repeats; ratio = peer_s / ours_s, > 1 means we are faster):

(a) ``MarketModel.sample(4096, 252, measure=...)``, historical and risk-neutral, at the default
    size (latent 4, width 32, depth 2) and at latent 16 / width 64 / depth 2 (what a user runs:
    the public call, in its default mode). Peer: ``torchsde.sdeint`` solving the same
    ``MarketModel`` object (it follows torchsde's protocol; its ``f_and_g`` is our fused
    evaluation) with reversible Heun and a ``BrownianInterval(dt=)`` told the step, from the
    same initial states; the peer cannot run the risk-neutral scheme, so both measures are
    timed against its one solve. A row ``_vs_unfused`` times the peer on the model written
    the conventional way (``model.unfused()``: nn.Sequential nets on cat([tau, h])).
(b) a user's own torchsde-protocol SDE (an ``nn.Module`` with ``f`` and ``g``: state 32,
    noise 8, MLPs 64 x 2 with time input and a final tanh, LipSwish) through ``nsf.sdeint``:
    sampling 4096 x 252 and forward + adjoint backward at batch 1024 (peer
    ``torchsde.sdeint_adjoint`` with ``adjoint_reversible_heun``); ours in the default mode and
    inside ``nsf.acceleration()`` (the step ``torch.compile``-d; compilation excluded).
(d) efficiency: achieved GFLOP/s (matmul FLOPs of the vector fields) of (a) at latent 16
    against this machine's fp32 matmul peak, measured in the same run with a large torch.mm.

Before timing, (a)'s historical sample is checked against torchsde on shared increments.
Run: ``python benchmarks/bench_solvers.py [--repeats 5] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchsde

import neuralsde_fin as nsf

N_PATHS, N_STEPS = 4096, 252
SIZES = {"default": dict(latent=4, width=32, depth=2), "l16w64": dict(latent=16, width=64, depth=2)}


def matmul_peak(repeats: int = 3, n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e9


def market_flops(model: nsf.MarketModel) -> float:
    """Matmul FLOPs of one sample (drift + diffusion nets, every path and step)."""
    w, d, m = model.width, model.state, model.noise
    macs = 2 * (model.latent + 1) * w + 2 * (model.depth - 1) * w * w + w * d + w * d * m
    return 2.0 * macs * N_PATHS * N_STEPS


def check_market(model: nsf.MarketModel) -> float:
    """max |ours - torchsde| of historical log-prices on the same increments (float32)."""
    from neuralsde_fin._brownian import counter_normal, derive_seed
    from neuralsde_fin._brownian._steps import StepBrownian
    from neuralsde_fin._models._market import _KEY_SAMPLE_DW, _KEY_SAMPLE_H0

    n = 64
    ours = torch.log(model.sample(n, N_STEPS, measure="historical", seed=3).prices)
    z = counter_normal(3, _KEY_SAMPLE_H0, torch.arange(n)[:, None],
                       torch.arange(model.init_noise)[None])
    bm = StepBrownian(n, model.noise, seed=derive_seed(3, _KEY_SAMPLE_DW), step=1.0,
                      scale=1.0 / model.window)
    ts = torch.arange(N_STEPS + 1, dtype=torch.float32) * bm.dt
    with torch.no_grad():
        ys = torchsde.sdeint(model, model._y0(z), ts, bm=bm, method="reversible_heun", dt=bm.dt)
    peer = (ys[..., :1] * model.path_scale).transpose(0, 1)
    return (ours - peer).abs().max().item()


def peer_market(sde, model: nsf.MarketModel):
    def run():
        y0 = model._y0(torch.randn(N_PATHS, model.init_noise))
        dtau = 1.0 / model.window
        ts = torch.arange(N_STEPS + 1, dtype=torch.float32) * dtau
        bm = torchsde.BrownianInterval(0.0, float(ts[-1]), (N_PATHS, model.noise), dt=dtau,
                                       levy_area_approximation="none")
        with torch.no_grad():
            torchsde.sdeint(sde, y0, ts, bm=bm, method="reversible_heun", dt=dtau)

    return run


class LipSwish(torch.nn.Module):
    def forward(self, x):
        return 0.909 * torch.nn.functional.silu(x)


def _mlp(i: int, o: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(i, 64), LipSwish(), torch.nn.Linear(64, 64),
                               LipSwish(), torch.nn.Linear(64, o), torch.nn.Tanh())


class UserSDE(torch.nn.Module):
    """A user's own SDE, written the torchsde way (not one of the package's fields)."""

    sde_type, noise_type = "stratonovich", "general"

    def __init__(self) -> None:
        super().__init__()
        self.drift, self.diffusion = _mlp(33, 32), _mlp(33, 32 * 8)

    def f(self, t, y):
        return self.drift(torch.cat([t.expand(y.shape[0], 1), y], 1))

    def g(self, t, y):
        return self.diffusion(torch.cat([t.expand(y.shape[0], 1), y], 1)).view(-1, 32, 8)


def user_cases(sde: UserSDE):
    ts = torch.linspace(0, 1, N_STEPS + 1)

    def ours_sample():
        with torch.no_grad():
            nsf.sdeint(sde, torch.zeros(N_PATHS, 32), ts, seed=0)

    def peer_sample():
        bm = torchsde.BrownianInterval(0.0, 1.0, (N_PATHS, 8), dt=1 / 252,
                                       levy_area_approximation="none")
        with torch.no_grad():
            torchsde.sdeint(sde, torch.zeros(N_PATHS, 32), ts, bm=bm, method="reversible_heun",
                            dt=1 / 252)

    def ours_adjoint():
        y0 = torch.zeros(1024, 32, requires_grad=True)
        nsf.sdeint(sde, y0, ts, seed=0, adjoint=True)[-1].pow(2).mean().backward()

    def peer_adjoint():
        y0 = torch.zeros(1024, 32, requires_grad=True)
        bm = torchsde.BrownianInterval(0.0, 1.0, (1024, 8), dt=1 / 252,
                                       levy_area_approximation="none")
        torchsde.sdeint_adjoint(sde, y0, ts, bm=bm, method="reversible_heun", dt=1 / 252,
                                adjoint_method="adjoint_reversible_heun")[-1].pow(2).mean().backward()

    return ours_sample, peer_sample, ours_adjoint, peer_adjoint


def accelerated(fn):
    def run():
        with nsf.acceleration():
            fn()

    return run


def bench(cases: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, repeats interleaved (a warm-up call first)."""
    for fn in cases.values():
        fn()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("case, ours_s, peer_s, ratio")
    for name, size in SIZES.items():
        torch.manual_seed(0)
        model = nsf.MarketModel(1, return_scale=[0.012], **size)
        err = check_market(model)
        print(f"# (a) {name}: max |ours - torchsde| on shared increments {err:.2e}", flush=True)
        if err > 1e-3:
            raise SystemExit("outputs disagree; not timing")
        t = bench({
            "hist": lambda m=model: m.sample(N_PATHS, N_STEPS, measure="historical"),
            "rn": lambda m=model: m.sample(N_PATHS, N_STEPS, measure="risk_neutral"),
            "peer": peer_market(model, model),
            "peer_unfused": peer_market(model.unfused(), model),
        }, args.repeats)
        for key, label in (("hist", "historical"), ("rn", "risk_neutral")):
            print(f"(a) MarketModel.sample {name} {label}, {t[key]:.4f}, {t['peer']:.4f}, "
                  f"{t['peer'] / t[key]:.2f}")
            print(f"(a) MarketModel.sample {name} {label}_vs_unfused, {t[key]:.4f}, "
                  f"{t['peer_unfused']:.4f}, {t['peer_unfused'] / t[key]:.2f}", flush=True)
        if name == "l16w64":
            peak = matmul_peak()
            gf = market_flops(model) / t["hist"] / 1e9
            print(f"# (d) {name} historical: {gf:.1f} GFLOP/s, {100 * gf / peak:.0f}% of the "
                  f"measured fp32 matmul peak {peak:.1f} GFLOP/s")
    torch.manual_seed(0)
    os_, ps, oa, pa = user_cases(UserSDE())
    t = bench({"os": os_, "osc": accelerated(os_), "ps": ps}, args.repeats)
    print(f"(b) user SDE sampling, {t['os']:.4f}, {t['ps']:.4f}, {t['ps'] / t['os']:.2f}")
    print(f"(b) user SDE sampling accelerated, {t['osc']:.4f}, {t['ps']:.4f}, "
          f"{t['ps'] / t['osc']:.2f}", flush=True)
    t = bench({"oa": oa, "oac": accelerated(oa), "pa": pa}, max(3, args.repeats // 2))
    print(f"(b) user SDE forward + adjoint backward, {t['oa']:.4f}, {t['pa']:.4f}, "
          f"{t['pa'] / t['oa']:.2f}")
    print(f"(b) user SDE forward + adjoint backward accelerated, {t['oac']:.4f}, {t['pa']:.4f}, "
          f"{t['pa'] / t['oac']:.2f}", flush=True)


if __name__ == "__main__":
    main()
