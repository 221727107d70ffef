"""Seconds per SDE-GAN training step: neuralsde_fin against torchsde + torchcde, in one run.

A training step is the recipe of torchsde's ``examples/sde_gan.py``: sample a batch from the
neural SDE generator (reversible Heun, adjoint), score generated and real paths with the neural
CDE discriminator (reversible Heun, adjoint, gradients to the generated path), one backward pass
of the Wasserstein loss mean D(fake) - mean D(real), negate the generator's gradients, one
Adadelta step for each network, clip the discriminator's weights. That is one generator and one
discriminator update.

The peer is that example's implementation (torchsde.sdeint_adjoint with
adjoint_method="adjoint_reversible_heun", torchcde.cdeint with method="reversible_heun",
backend="torchsde", dt=1 and the adjoint; nn.Sequential MLPs on cat([t, x])), given a
BrownianInterval with the step-size hint dt=1 (the example builds none, which makes the peer
about 3% slower); ours is
neuralsde_fin's ``sdegan_step`` with the same architecture, batch and grid, twice: eager, and
with compiled solver steps (``nsf.compiled_solvers()``: the reversible Heun forward and adjoint
backward steps of generator and discriminator, compilation timed separately and excluded; rows
``*_compiled``). The compiled rows are what a training run gets by default
(``nsf.calibrate`` / ``SDEGANTrainer`` compile when ``steps >= 1000``, where the 20-30 s of
compilation is paid back; the torchsde example runs 10,000 steps); the eager rows are what
shorter runs, or ``compile=False``, get. Repeats are interleaved (ours, ours compiled, peer,
...) and medians reported.

Cases:
    (i)  the published recipe: initial noise 5, Brownian dim 3, hidden 16, MLP 16 x 1 layer,
         batch 1024, 64 time points, dt = 1;
    (ii) hidden 32, MLP 64 x 2 layers, otherwise the same.

Usage: python benchmarks/bench_sdegan.py [--repeats N] [--threads T]
Prints ``case, ours_s, peer_s, ratio`` (ratio = peer / ours; > 1 means we are faster): wall
seconds, then the same case with suffix ``_cpu`` in process CPU seconds, which is less disturbed
when other jobs share the machine. One thread by default (``--threads``): at these sizes extra
threads barely help and, on a shared machine, OpenMP spin-waits make them much slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neuralsde_fin._calibrate._discriminator import CDEDiscriminator, time_augment
from neuralsde_fin._calibrate._sdegan import SDEGenerator, sdegan_step
from neuralsde_fin._solvers import compiled_solvers

CASES = {
    "i_recipe_h16_mlp16x1": dict(hidden=16, width=16, depth=1),
    "ii_h32_mlp64x2": dict(hidden=32, width=64, depth=2),
}
BATCH, LENGTH, INITIAL_NOISE, NOISE, DATA = 1024, 64, 5, 3, 1


def _peer(hidden: int, width: int, depth: int):
    """The torchsde + torchcde SDE-GAN of torchsde's example, written out; returns step()."""
    import torchcde
    import torchsde

    class LipSwish(torch.nn.Module):
        def forward(self, x):
            return 0.909 * torch.nn.functional.silu(x)

    def mlp(i, o, tanh):
        layers = [torch.nn.Linear(i, width), LipSwish()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(width, width), LipSwish()]
        layers.append(torch.nn.Linear(width, o))
        if tanh:
            layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers)

    class GenFunc(torch.nn.Module):
        sde_type, noise_type = "stratonovich", "general"

        def __init__(self):
            super().__init__()
            self.drift = mlp(1 + hidden, hidden, True)
            self.diffusion = mlp(1 + hidden, hidden * NOISE, True)

        def f_and_g(self, t, x):
            tx = torch.cat([t.expand(x.size(0), 1), x], dim=1)
            return self.drift(tx), self.diffusion(tx).view(x.size(0), hidden, NOISE)

    class Gen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.initial = mlp(INITIAL_NOISE, hidden, False)
            self.func = GenFunc()
            self.readout = torch.nn.Linear(hidden, DATA)

        def forward(self, ts, n):
            x0 = self.initial(torch.randn(n, INITIAL_NOISE))
            xs = torchsde.sdeint_adjoint(
                self.func,
                x0,
                ts,
                method="reversible_heun",
                dt=1.0,
                adjoint_method="adjoint_reversible_heun",
                # the example passes no bm; a BrownianInterval told the step size is faster
                bm=torchsde.BrownianInterval(
                    t0=ts[0], t1=ts[-1], size=(n, NOISE), dt=1.0, levy_area_approximation="none"
                ),
            )
            ys = self.readout(xs.transpose(0, 1))
            t = ts.view(1, -1, 1).expand(n, -1, 1)
            return torchcde.linear_interpolation_coeffs(torch.cat([t, ys], dim=2))

    class DiscFunc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(1 + hidden, hidden * (1 + DATA), True)

        def forward(self, t, h):
            th = torch.cat([t.expand(h.size(0), 1), h], dim=1)
            return self.net(th).view(h.size(0), hidden, 1 + DATA)

    class Disc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.initial = mlp(1 + DATA, hidden, False)
            self.func = DiscFunc()
            self.readout = torch.nn.Linear(hidden, 1)

        def forward(self, coeffs):
            Y = torchcde.LinearInterpolation(coeffs)
            h0 = self.initial(Y.evaluate(Y.interval[0]))
            hs = torchcde.cdeint(
                Y,
                self.func,
                h0,
                Y.interval,
                method="reversible_heun",
                backend="torchsde",
                dt=1.0,
                adjoint_method="adjoint_reversible_heun",
                adjoint_params=(coeffs,) + tuple(self.func.parameters()),
            )
            return self.readout(hs[:, -1]).mean()

    gen, disc = Gen(), Disc()
    with torch.no_grad():
        for p in gen.initial.parameters():
            p.mul_(3.0)
        for p in gen.func.parameters():
            p.mul_(0.5)
    g_opt = torch.optim.Adadelta(gen.parameters(), lr=2e-4, weight_decay=0.01)
    d_opt = torch.optim.Adadelta(disc.parameters(), lr=1e-3, weight_decay=0.01)
    ts = torch.arange(float(LENGTH))
    real = time_augment(ts, _real_paths())

    def step():
        fake = gen(ts, BATCH)
        loss = disc(fake) - disc(real)
        loss.backward()
        for p in gen.parameters():
            p.grad.neg_()
        g_opt.step()
        d_opt.step()
        g_opt.zero_grad()
        d_opt.zero_grad()
        with torch.no_grad():
            for m in disc.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.clamp_(-1 / m.out_features, 1 / m.out_features)
        return float(loss.detach())

    return step


def _ours(hidden: int, width: int, depth: int):
    gen = SDEGenerator(DATA, INITIAL_NOISE, NOISE, hidden, width, depth)
    disc = CDEDiscriminator(DATA, hidden, width, depth)
    g_opt = torch.optim.Adadelta(gen.parameters(), lr=2e-4, weight_decay=0.01)
    d_opt = torch.optim.Adadelta(disc.parameters(), lr=1e-3, weight_decay=0.01)
    ts = torch.arange(float(LENGTH))
    real = time_augment(ts, _real_paths())
    return lambda: sdegan_step(gen, disc, real, ts, g_opt, d_opt)


def _compiled_run(step):
    """``step`` with compiled solver steps (``nsf.compiled_solvers()``, the training default for
    runs of at least 1000 steps)."""

    def run():
        with compiled_solvers(True):
            return step()

    return run


def _real_paths() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(BATCH, LENGTH, DATA, generator=g).cumsum(1)


def _time(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("case, ours_s, peer_s, ratio")
    for name in args.cases:
        ours, peer = _ours(**CASES[name]), _peer(**CASES[name])
        compiled = _compiled_run(_ours(**CASES[name]))
        ours(), peer()  # warm-up
        t0 = time.perf_counter()
        compiled()
        secs = time.perf_counter() - t0
        print(f"# {name}: compiled steps, first call (compilation) {secs:.1f} s")
        compiled()
        to, tc, tp = [], [], []
        for _ in range(args.repeats):
            to.append(_time(ours))
            tc.append(_time(compiled))
            tp.append(_time(peer))
        for k, suffix in ((0, ""), (1, "_cpu")):
            p = statistics.median(t[k] for t in tp)
            for label, times in ((name, to), (f"{name}_compiled", tc)):
                o = statistics.median(t[k] for t in times)
                print(f"{label}{suffix}, {o:.4f}, {p:.4f}, {p / o:.2f}", flush=True)


if __name__ == "__main__":
    main()
