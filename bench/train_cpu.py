"""Training-iteration benchmarks: the paper's models built from anode_native.nn against the same
architecture and weights solved by torchdiffeq (case 3 of the suite).

One iteration = zero_grad, forward, loss, backward, Adam step. Before every timed iteration the
weights are restored and Adam's state cleared (untimed), so every repeat does the same work and
both libraries see identical weights (and so take the same steps).
  toy       2-D toy ANODE: ODENet(2, hidden 32, augment 1, time-dependent), batch 256, MSE,
            direct backprop and adjoint (adjoint skipped while anode_native has no odeint_adjoint);
            torchode (backprop through its solver) as a third column of the direct case
  mnist     MNIST ANODE ConvODENet((1, 28, 28), 64 filters, augment 5, time-dependent), batch 256,
            cross-entropy on random images; adjoint (the paper's setting) when available, else
            direct backprop; on the CPU, and on the GPU as well when one is present
Usage: python bench/train_cpu.py [--quick] [--json PATH] [--threads N] [--cases toy,mnist]
"""
from __future__ import annotations

import copy
import importlib

import torch
from torch import nn

from common import (finish, OURS, TORCHDIFFEQ, TORCHODE, CountingFunc, TorchodeSolver, bench_args,
                    fmt_time, record, setup_threads, summarize, time_interleaved,
                    torchode_available)
import anode_native  # noqa: E402  (common puts the checkout on sys.path)
import torchdiffeq  # noqa: E402

CASES = ("toy", "mnist")


def has_adjoint() -> bool:
    """True when anode_native's adjoint is importable (ODEBlock imports anode_native.adjoint)."""
    if not hasattr(anode_native, "odeint_adjoint"):
        return False
    try:
        importlib.import_module("anode_native.adjoint")
    except ImportError:
        return False
    return True


class TorchdiffeqBlock(nn.Module):
    """Drop-in for anode_native.nn.ODEBlock that solves with torchdiffeq (same odefunc module).
    Counts evaluations with a CountingFunc: forward ones in .nfe_forward, backward (adjoint)
    ones in .nfe_backward after backward."""

    def __init__(self, block):
        super().__init__()
        self.func = CountingFunc(block.odefunc)
        self.tol, self.adjoint = block.tol, block.adjoint
        self.augment_dim = block.augment_dim
        self.nfe_forward = 0

    @property
    def nfe_backward(self) -> int:
        return self.func.nfe - self.nfe_forward

    def forward(self, x):
        from anode_native.nn import augment
        times = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        solve = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        self.func.reset()
        out = solve(self.func, augment(x, self.augment_dim), times,
                    rtol=self.tol, atol=self.tol, method="dopri5")
        self.nfe_forward = self.func.nfe
        return out[-1]


class TorchodeBlock(nn.Module):
    """ODE block on torchode (backprop through the solver, AutoDiffAdjoint) for an ODEFunc.
    torchode steps each sample separately, so time enters as a per-sample column; the layers
    and weights are the ODEFunc's own."""

    def __init__(self, block):
        super().__init__()
        self.odefunc = block.odefunc
        self.augment_dim = block.augment_dim
        self.func = CountingFunc(self._per_sample)
        self.solver = TorchodeSolver(self.func, block.tol, block.tol)
        self.nfe_forward, self.nfe_backward = 0, 0

    def _per_sample(self, t, y):
        f = self.odefunc
        x = torch.cat([t.to(y.dtype).reshape(-1, 1), y], dim=1) if f.time_dependent else y
        return f.fc3(f.non_linearity(f.fc2(f.non_linearity(f.fc1(x)))))

    def forward(self, x):
        from anode_native.nn import augment
        self.func.reset()
        out = self.solver(augment(x, self.augment_dim), torch.tensor([0.0, 1.0]))
        self.nfe_forward = self.func.nfe
        return out[-1]


def twin(model, block_cls):
    """A deep copy of an anode_native.nn model (same weights) whose ODE block is replaced."""
    other = copy.deepcopy(model)
    other.odeblock = block_cls(other.odeblock)
    return other


def compare_training(case, label, model, x, y, loss_fn, device, repeats, warmup, params,
                     with_torchode=False):
    """Time training iterations of `model` (ours) and its torchdiffeq twin (and torchode's),
    interleaved."""
    models = {OURS: model, TORCHDIFFEQ: twin(model, TorchdiffeqBlock)}
    if with_torchode and torchode_available():
        models[TORCHODE] = twin(model, TorchodeBlock)
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    init = {name: copy.deepcopy(m.state_dict()) for name, m in models.items()}
    losses = {}

    def restore(name):
        models[name].load_state_dict(init[name])
        opts[name].state.clear()

    def step(name):
        opts[name].zero_grad(set_to_none=True)
        loss = loss_fn(models[name](x), y)
        loss.backward()
        opts[name].step()
        losses[name] = float(loss.detach())

    times = time_interleaved({n: (lambda n=n: step(n)) for n in models}, repeats=repeats,
                             warmup=warmup, device=device,
                             before={n: (lambda n=n: restore(n)) for n in models})
    libs = {}
    for name, m in models.items():
        res = summarize(times[name])
        block = m.odeblock
        res.update(nfe=block.nfe_forward, nfe_forward=block.nfe_forward,
                   nfe_backward=block.nfe_backward, loss=losses[name])
        libs[name] = res
    row = record(case, label, dict(params, repeats=repeats, device=str(device)), libs)
    nfe = "NFE equal" if row.get("nfe_equal") else "NFE MISMATCH"
    if params.get("adjoint"):  # both count the adjoint solve's evaluations
        row["nfe_backward_equal"] = libs[OURS]["nfe_backward"] == libs[TORCHDIFFEQ]["nfe_backward"]
        nfe += ", backward NFE " + ("equal" if row["nfe_backward_equal"] else "differs")
    print(f"[{case}] {label}: " + "; ".join(
        f"{n} {fmt_time(r['median_s'])} (nfe fwd {r['nfe_forward']} bwd {r['nfe_backward']})"
        for n, r in libs.items()) + f" | torchdiffeq/ours {row['speedup'].get(TORCHDIFFEQ, 0):.2f}x"
        f" | {nfe}", flush=True)
    return row


def case_toy(quick=False, notes=None):
    from anode_native.nn import ODENet
    rows = []
    batch = 16 if quick else 256
    modes = [False] + ([True] if has_adjoint() else [])
    if not has_adjoint() and notes is not None:
        notes.append("anode_native.odeint_adjoint is missing: adjoint training cases skipped.")
    for adjoint in modes:
        torch.manual_seed(0)
        model = ODENet(2, 32, output_dim=1, augment_dim=1, time_dependent=True, tol=1e-3,
                       adjoint=adjoint)
        x, y = torch.randn(batch, 2), torch.randn(batch, 1)
        rows.append(compare_training(
            "train_toy", "adjoint" if adjoint else "direct", model, x, y, nn.functional.mse_loss,
            None, repeats=1 if quick else 20, warmup=1 if quick else 2,
            params={"model": "ODENet(2, 32, augment 1, time-dependent)", "batch": batch,
                    "adjoint": adjoint, "tol": 1e-3}, with_torchode=not adjoint))
    return rows


def case_mnist(quick=False, notes=None):
    from anode_native.nn import ConvODENet
    rows = []
    adjoint = has_adjoint()
    if not adjoint and notes is not None:
        notes.append("MNIST training timed with direct backprop (anode_native.odeint_adjoint "
                     "missing; the paper uses the adjoint).")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    img, filters, batch = ((1, 8, 8), 4, 4) if quick else ((1, 28, 28), 64, 256)
    for device in devices:
        torch.manual_seed(0)
        model = ConvODENet(img, filters, output_dim=10, augment_dim=5, time_dependent=True,
                           tol=1e-3, adjoint=adjoint).to(device)
        x = torch.rand(batch, *img, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        cpu = device.type == "cpu"
        rows.append(compare_training(
            "train_mnist", f"{device.type} {'adjoint' if adjoint else 'direct'}", model, x, y,
            nn.functional.cross_entropy, device,
            repeats=1 if quick else (5 if cpu else 10), warmup=0 if (quick or cpu) else 2,
            params={"model": f"ConvODENet({img}, {filters} filters, augment 5)", "batch": batch,
                    "adjoint": adjoint, "tol": 1e-3}))
    return rows


def run_cases(names=CASES, quick=False):
    notes, rows = [], []
    for name in names:
        rows += globals()[f"case_{name}"](quick, notes)
    return rows, notes


def main():
    parser = bench_args(__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {setup_threads(args.threads)} thread(s)")
    rows, notes = run_cases([c for c in args.cases.split(",") if c], args.quick)
    finish(args, rows, notes)


if __name__ == "__main__":
    main()
