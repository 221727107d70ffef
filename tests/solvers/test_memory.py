"""Memory of forward + backward: constant in the number of steps for the adjoint.

Measured as the peak of the live bytes of tensors saved for backward (autograd's memory), with
``torch.autograd.graph.saved_tensors_hooks``: each saved tensor is boxed on pack and its storage
counted (once, however many views of it are saved) until autograd releases the last box. The
adjoint's other memory is the Brownian increments, fetched
in chunks of ``ADJOINT_CHUNK_STEPS`` steps (at most two chunks alive), also independent of the
number of steps.
"""

from __future__ import annotations

import weakref

import torch

import neuralsde_fin as nsf


class _Box:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


class SavedBytes:
    """Live and peak bytes of the storages of tensors saved for backward.

    A storage is counted once while any saved tensor (or view) of it is alive: saved views of
    one tensor (e.g. the rows of the increments) do not multiply its size.
    """

    def __init__(self):
        self.cur = 0
        self.peak = 0
        self.refs: dict[int, int] = {}

    def pack(self, t):
        box = _Box(t)
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.refs:
            self.refs[key] = 0
            self.cur += storage.nbytes()
            self.peak = max(self.peak, self.cur)
        self.refs[key] += 1
        weakref.finalize(box, self._free, key, storage.nbytes())
        return box

    def _free(self, key, n):
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.cur -= n

    @staticmethod
    def unpack(box):
        return box.t


def _peak(replay, n_steps, adjoint):
    torch.manual_seed(0)
    model = nsf.MLPDriftDiffusion(4, 2, 8, 2).double()
    batch = 32
    grid = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    bm = replay(grid, batch, 2, seed=9)
    y0 = torch.randn(batch, 4, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sb = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(sb.pack, sb.unpack):
        ys = nsf.sdeint(model, y0, ts, bm=bm, dt=1.0 / n_steps, adjoint=adjoint)
        ys[-1].pow(2).sum().backward()
    assert y0.grad is not None
    return sb.peak


def test_adjoint_memory_flat_backprop_linear(replay):
    adj64, adj1024 = _peak(replay, 64, True), _peak(replay, 1024, True)
    bp64, bp256 = _peak(replay, 64, False), _peak(replay, 256, False)
    print(f"adjoint: {adj64} B at 64 steps, {adj1024} B at 1024 steps ({adj1024 / adj64:.2f}x)")
    print(f"backprop: {bp64} B at 64 steps, {bp256} B at 256 steps ({bp256 / bp64:.2f}x)")
    assert adj1024 <= 1.1 * adj64
    assert 3.5 < bp256 / bp64 < 4.5  # linear in the number of steps
    assert bp64 > 10 * adj64
