"""``torch.compile`` of solver steps on the package's fused neural vector fields.

When compiling is on (:func:`enabled`: ``nsf.acceleration()`` / ``NEURALSDE_FIN_COMPILE=1``;
training runs of at least ``AUTO_COMPILE_STEPS`` steps by default, ``_accel.resolve``):

* **Sampling** on devices without the native kernel: a reversible Heun solve without autograd
  runs each step

      z1 = 2 y - z + f dt + g dW
      f1, g1 = f(t + dt, z1), g(t + dt, z1)
      y1 = y + (f + f1) dt / 2 + (g + g1) dW / 2

  (log-price rows, if any, at the left point) as one compiled graph (:func:`compiled_step`):
  Inductor fuses the time bias, LipSwish, the g dW contractions and the update around the
  GEMMs. On the CPU the native whole-solve kernel (``_native_step``) runs instead.
* **Training with the adjoint.** The forward steps (``_reversible_heun.forward_step``) and the
  backward steps (``_adjoint.backward_step``: the algebraic reverse step, one evaluation and
  its hand-written VJP) of ``sdeint(..., adjoint=True)`` and ``cdeint`` on fused fields
  (:func:`compilable`) are compiled functions (:func:`compiled_function`).

Compiling costs seconds once per process, architecture and batch shape (Dynamo recompiles for
a new batch size; after ``torch._dynamo.config.recompile_limit`` variants it stays eager), so
it pays for long jobs only. Solves of generic SDEs are never compiled. If compilation fails (no
C++ compiler, unsupported device), one warning is issued and the eager path is used for the
rest of the process. Measurements: ``benchmarks/README.md``.

The compiled sampling module holds its own copy of the folded weights, refreshed in place before
every solve (the graph reads them as inputs), so models of one architecture share one
compilation and a model that keeps training is sampled with its current weights without
recompiling. The compiled training steps likewise read the weights as graph inputs.

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralsde_fin._accel import AUTO_COMPILE_STEPS, acceleration, compiling, mode, resolve

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

#: The public name of the one switch (``_accel.acceleration``), kept for existing code.
compiled_solvers = acceleration


def enabled() -> bool:
    """Whether solver steps are compiled now (:func:`_accel.compiling`), never after a failure."""
    return not _failed and compiling()


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
