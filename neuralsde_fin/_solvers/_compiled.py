"""``torch.compile`` of solver steps on the package's fused neural vector fields.

When enabled (:func:`enabled`: inside ``nsf.compiled_solvers()``, or with
``NEURALSDE_FIN_COMPILE=1`` in the environment; training runs of at least
``AUTO_COMPILE_STEPS`` steps enable it by default, see :func:`resolve`):

* **Sampling.** A reversible Heun solve of an :class:`MLPDriftDiffusion` without autograd
  (``torch.no_grad()``) runs each step

      z1 = 2 y - z + f dt + g dW
      f1, g1 = f(t + dt, z1), g(t + dt, z1)
      y1 = y + (f + f1) dt / 2 + (g + g1) dW / 2

  as one compiled graph (:func:`compiled_step`): Inductor fuses the time bias, LipSwish, the
  g dW contractions and the update into a few C++ / Triton kernels around the GEMMs. On this
  2-core machine that is about 10-15% faster per step than the eager fast path. On the CPU the
  solver runs the native whole-solve kernel of ``_native_step`` instead (no Dynamo; about 1.3x
  faster than this compiled step, built once per machine instead of compiled per process),
  which large solves also take without compiled mode (``_native_step.native_wanted``).
* **Training with the adjoint.** The forward steps (``_reversible_heun.forward_step``) and the
  backward steps (``_adjoint.backward_step``: the algebraic reverse step, one evaluation and
  its hand-written VJP) of ``sdeint(..., adjoint=True)`` and ``cdeint`` on fused fields
  (:func:`compilable`) are compiled functions (:func:`compiled_function`). This is where the
  compilation pays most: the SDE-GAN training step is 1.2-1.6x faster (``bench_sdegan.py``).

Compiling costs about 5-30 s (20-30 s for a training solve with a cold Inductor cache) once per
process, architecture and batch shape (Dynamo recompiles for a new batch size; after
``torch._dynamo.config.recompile_limit`` variants it stays eager), so it pays for long jobs
(training runs, many sampling chunks), not for one small solve: it is on by default only for
training runs long enough to pay it back (``AUTO_COMPILE_STEPS``), and opt-in elsewhere.
Solves of generic SDEs are never compiled. If compilation fails (no C++ compiler, unsupported
device), one warning is issued and the eager path is used for the rest of the process.

The compiled sampling module holds its own copy of the folded weights, refreshed in place before
every solve (the graph reads them as inputs), so models of one architecture share one
compilation and a model that keeps training is sampled with its current weights without
recompiling. Inductor's weight freezing (MKL packed-weight linears) was measured too and gave no
further gain here, so it is not used. The compiled training steps likewise read the weights as
graph inputs.

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AUTO_COMPILE_STEPS",
    "compilable",
    "compiled_function",
    "compiled_solvers",
    "compiled_step",
    "enabled",
    "mode",
    "resolve",
]

_failed = False
_cache: dict[tuple, tuple[nn.Module, object]] = {}
_functions: dict[object, object] = {}


#: Training runs of at least this many steps compile their solver steps unless told otherwise
#: (``resolve``): 20-30 s of compilation against 0.05-0.2 s saved per SDE-GAN step.
AUTO_COMPILE_STEPS = 1000

_override: bool | None = None


def enabled() -> bool:
    """Whether solver steps are compiled now: inside :func:`compiled_solvers` its flag, else
    ``NEURALSDE_FIN_COMPILE=1``; never after a compilation failure."""
    if _failed:
        return False
    if _override is not None:
        return _override
    return _env_flag() is True


def mode() -> bool | None:
    """The explicit compile mode: :func:`compiled_solvers`' flag inside one, else
    ``NEURALSDE_FIN_COMPILE`` (``1`` True, ``0`` False), else None (the defaults apply)."""
    return _override if _override is not None else _env_flag()


def _env_flag() -> bool | None:
    flag = os.environ.get("NEURALSDE_FIN_COMPILE", "").strip()
    return {"1": True, "0": False}.get(flag)


def resolve(compile: bool | None, steps: int) -> bool:
    """The compile mode of a training run of ``steps`` steps.

    An explicit ``compile`` wins; else ``NEURALSDE_FIN_COMPILE`` (``1`` / ``0``) if set; else
    compile when ``steps >= AUTO_COMPILE_STEPS``, where the one-off compilation is paid back.
    """
    if compile is not None:
        return bool(compile)
    env = _env_flag()
    return env if env is not None else steps >= AUTO_COMPILE_STEPS


@contextlib.contextmanager
def compiled_solvers(enabled: bool = True) -> Iterator[None]:
    """Compile (or, with ``enabled=False``, do not compile) solver steps inside the block.

    Overrides ``NEURALSDE_FIN_COMPILE`` for the reversible-Heun steps of the package's fused
    fields (sampling without autograd, and ``sdeint(..., adjoint=True)`` / ``cdeint`` forward
    and adjoint backward steps); blocks nest, and the previous mode is restored on exit. The
    flag is process-wide, not per thread. Compilation costs 5-30 s once per process,
    architecture and batch shape; afterwards a step is 10-40% faster (``benchmarks/``). On the
    CPU, sampling solves and the adjoint's forward pass run the native whole-solve kernel
    instead (``_native_step``), which large solves take even outside this block;
    ``enabled=False`` keeps them eager too.

    Example:
        >>> with nsf.compiled_solvers():
        ...     paths = model.sample(100_000, seed=0)  # doctest: +SKIP
    """
    global _override
    previous, _override = _override, bool(enabled)
    try:
        yield
    finally:
        _override = previous


class _Step(nn.Module):
    """One reversible Heun step of a fused drift / diffusion MLP pair (no autograd).

    Holds the field's folded weights (LipSwish scale already in the next layer) as ``Linear``
    layers; ``load`` copies them from the evaluator's tensors.

    Shape:
        y, z, f, gdw: (batch, d); t1, dt: (); dw, dw_next: (batch, m) (general noise, g is held
        noise-major as (batch, m, d)) or (batch, d) (diagonal noise).
    """

    def __init__(self, field, like: Tensor) -> None:
        super().__init__()
        in_w = field.tensors[0]
        hid_w = field.tensors[3]
        d_in, kw = in_w.shape
        self.width, self.n_hidden = field.width, hid_w.shape[0]
        self.diagonal = field.diagonal
        self.shape_g = field.shape_g
        self.finals = field.finals
        kwargs = {"dtype": like.dtype, "device": like.device}
        self.inp = nn.Linear(d_in, kw, **kwargs)
        self.in_time = nn.Parameter(torch.empty(kw, **kwargs))
        self.hidden = nn.ModuleList(
            nn.ModuleList(nn.Linear(self.width, self.width, **kwargs) for _ in range(2))
            for _ in range(self.n_hidden)
        )
        outs = [field.tensors[5 + i].shape[1] for i in range(2)]
        self.out = nn.ModuleList(nn.Linear(self.width, o, **kwargs) for o in outs)
        self.in_lo = field.in_lo
        self.euler = field.euler_rows  # log-price rows (``_fused.LogPriceRows``), scale 1
        self.register_buffer("lp_rate", torch.zeros(self.euler, **kwargs))
        self.register_buffer("lp_coef", torch.zeros(self.euler, **kwargs))
        self.requires_grad_(False)  # sampling only: never part of an autograd graph

    @torch.no_grad()
    def load(self, tensors: list[Tensor]) -> None:
        in_w, in_t, in_b, hid_w, hid_b = (t.detach() for t in tensors[:5])
        self.inp.weight.copy_(in_w.t())
        self.inp.bias.copy_(in_b)
        self.in_time.copy_(in_t)
        for j, pair in enumerate(self.hidden):
            for i, lin in enumerate(pair):
                lin.weight.copy_(hid_w[j, i].t())
                lin.bias.copy_(hid_b[j, i, 0])
        for i, lin in enumerate(self.out):
            lin.weight.copy_(tensors[5 + i].detach().t())
            lin.bias.copy_(tensors[7 + i].detach())

    @torch.no_grad()
    def load_log_price(self, log_price) -> None:
        if log_price is not None:
            self.lp_rate.copy_(log_price.rate)
            self.lp_coef.copy_(log_price.var_coef)

    def fields(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """f(t, x) and g(t, x), g noise-major (batch, m, d) for general noise."""
        h = F.silu(self.inp(x[:, self.in_lo :]) + self.in_time * t)
        hs = [h[:, : self.width], h[:, self.width :]]
        for pair in self.hidden:
            hs = [F.silu(lin(v)) for lin, v in zip(pair, hs)]
        f, g = (lin(v) for lin, v in zip(self.out, hs))
        if self.finals[0] is not None:
            f = self.finals[0](f)
        if self.finals[1] is not None:
            g = self.finals[1](g)
        if not self.diagonal:
            d, m = self.shape_g
            g = g.view(x.shape[0], m, d)
        e = self.euler
        if e:  # log-price rows: drift rate + coef |g_i|^2
            var = g[:, :e].pow(2) if self.diagonal else g[:, :, :e].pow(2).sum(1)
            f = torch.cat([self.lp_rate + self.lp_coef * var, f[:, e:]], dim=1)
        return f, g

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        if self.diagonal:
            return g * dw
        return (dw.unsqueeze(2) * g).sum(1)

    def forward(self, y, z, f, gdw, t1, dt, dw, dw_next):
        z1 = gdw + f * dt + 2 * y - z
        f1, g1 = self.fields(t1, z1)
        y1 = y + (f + f1) * (0.5 * dt) + 0.5 * (gdw + self.prod(g1, dw))
        e = self.euler
        if e:  # log-price rows at the left point
            y1 = torch.cat([y[:, :e] + f[:, :e] * dt + gdw[:, :e], y1[:, e:]], dim=1)
        return y1, z1, f1, self.prod(g1, dw_next)


def compiled_step(field, like: Tensor):
    """The compiled step for ``field`` (a fused SDE field), or None when not enabled / possible.

    Returns ``(step, first)``: ``step(y, z, f, gdw, t1, dt, dw, dw_next)`` as in :class:`_Step`,
    and ``first(t0, y0, dw0) -> (f0, g0 dW_0)`` (eager) to start the recursion.
    """
    if not enabled() or getattr(field, "n", 0) != 2 or torch.is_grad_enabled():
        return None
    lp = getattr(field, "log_price", None)
    if lp is not None and lp.scale is not None:
        return None  # a volatility-scaled sample (Greeks): the eager step
    # One compiled module per architecture, shared by every model of that architecture: the
    # weights are copied in before each solve and read by the graph as inputs.
    key = (
        like.dtype,
        like.device,
        tuple(t.shape for t in field.tensors),
        field.finals,
        field.diagonal,
        field.shape_g,
        field.in_lo,
        field.euler_rows,
    )
    entry = _cache.get(key)
    if entry is None:
        mod = _Step(field, like)
        entry = _cache[key] = (mod, torch.compile(mod, dynamic=False))
    mod, step = entry
    mod.load(field.tensors)
    mod.load_log_price(lp)

    def first(t0: Tensor, y0: Tensor, dw0: Tensor) -> tuple[Tensor, Tensor]:
        f0, g0 = mod.fields(t0, y0)
        return f0, mod.prod(g0, dw0)

    return _guarded(step, mod, "sampling step"), first


def compilable(vf) -> bool:
    """Whether solver steps on ``vf`` may be compiled: a fused field of this package whose VJP is
    written out by hand (a generic SDE, or the autograd VJP, is not traced)."""
    return getattr(vf, "final_grads", None) is not None


def compiled_function(fn, what: str):
    """``torch.compile(fn, dynamic=False)`` when enabled (else None), with the eager fallback.

    For a step function whose tensors keep their shapes from call to call (the adjoint's
    backward step): Dynamo traces it once per input structure and shapes, and replays the graph
    while its guards hold. The compiled function is shared by every caller in the process.
    """
    if not enabled():
        return None
    compiled = _functions.get(fn)
    if compiled is None:
        compiled = _functions[fn] = torch.compile(fn, dynamic=False)
    return _guarded(compiled, fn, what)


def _guarded(step, eager, what: str):
    """Call the compiled ``step``; on a compilation error warn once and fall back to ``eager``."""
    state = {"fn": step}

    def call(*args):
        global _failed
        try:
            return state["fn"](*args)
        except Exception as err:  # noqa: BLE001 - backend / compiler failures vary
            if state["fn"] is eager:
                raise
            _failed = True
            state["fn"] = eager
            warnings.warn(
                f"torch.compile of the {what} failed ({err!r}); using the eager {what}",
                RuntimeWarning,
                stacklevel=2,
            )
            return eager(*args)

    return call
