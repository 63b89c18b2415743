"""Trainer: a short real training run, histories with engine NFE, logs, atomic checkpoints,
exact resume, and solver failures recorded instead of raised."""
import csv
import json

import pytest
import torch

from anode_native.data import ConcentricSphere
from anode_native.nn import ODENet, ResNet
from anode_native.training import Trainer, format_failure
from anode_native.training.checkpoint import atomic_torch_save, load_checkpoint
from anode_native.training.runner import make_loader


def sphere(n_in=40, n_out=80, seed=0):
    return ConcentricSphere(2, num_points_inner=n_in, num_points_outer=n_out, seed=seed)


def make(seed=0, model="anode", out_dir=None, **kw):
    torch.manual_seed(seed)
    if model == "resnet":
        net = ResNet(2, 16, 2)
    else:
        net = ODENet(2, 16, augment_dim=1 if model == "anode" else 0, time_dependent=True, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    return net, Trainer(net, opt, loss="huber", out_dir=out_dir, progress=False)


def test_short_training_run_learns_and_records_engine_nfe(tmp_path):
    net, trainer = make(out_dir=tmp_path)
    loader = make_loader(sphere(), batch_size=20, shuffle=True)
    history = trainer.train(loader, num_epochs=6)
    n = 6 * len(loader)
    assert trainer.iteration == n and history["completed"] and not trainer.failed
    for key in ("iteration", "epoch", "loss", "nfe_forward", "nfe_backward", "accuracy", "time"):
        assert len(history[key]) == n
    assert history["iteration"] == list(range(1, n + 1))
    assert all(isinstance(v, int) and v >= 8 for v in history["nfe_forward"])   # dopri5: >= 2 + 6
    assert all(isinstance(v, int) and v > 0 for v in history["nfe_backward"])
    assert all(t > 0 for t in history["time"])
    first, last = sum(history["loss"][:6]) / 6, sum(history["loss"][-6:]) / 6
    assert last < 0.7 * first
    # logs on disk
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["loss"] == pytest.approx(history["loss"])
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == n and float(rows[-1]["loss"]) == pytest.approx(history["loss"][-1])
    assert int(rows[0]["nfe_forward"]) == history["nfe_forward"][0]


def test_resnet_has_no_nfe_and_validation_is_recorded():
    net, trainer = make(model="resnet")
    trainer.eval_every = 3
    train, val = make_loader(sphere(), 20, True), make_loader(sphere(seed=1), 50, False)
    history = trainer.train(train, 2, val_loader=val)
    assert all(v is None for v in history["nfe_forward"])
    assert history["val"]["iteration"] == [3, 6, 9, 12]
    assert all(0 <= a <= 1 for a in history["val"]["accuracy"])


class Crash(Exception):
    pass


def test_resume_ends_with_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = sphere()
    _, full = make(seed=0)
    torch.manual_seed(123)                   # the data order comes from the global RNG
    full.train(make_loader(data, 20, True), num_epochs=3)

    # Interrupted run: checkpoint every 4 iterations, crash at iteration 10 (mid-epoch 2), so
    # the iterations after the checkpoint at 8 are lost, as in a real crash.
    _, first = make(seed=0, out_dir=tmp_path)
    first.checkpoint_every = 4

    def crash(trainer):
        if trainer.iteration == 10:
            raise Crash()
    first.callbacks.append(crash)
    torch.manual_seed(123)
    with pytest.raises(Crash):
        first.train(make_loader(data, 20, True), num_epochs=3)

    # A new process would start with other weights and another RNG state: both are restored.
    net2, second = make(seed=99, out_dir=tmp_path)
    torch.manual_seed(7)
    assert second.resume() and second.iteration == 8 and second.batch_in_epoch == 2
    second.train(make_loader(data, 20, True), num_epochs=3)

    for key in ("loss", "nfe_forward", "nfe_backward", "accuracy", "epoch"):
        assert second.history[key] == full.history[key], key
    for p, q in zip(full.model.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    # resuming a completed run does nothing more
    assert second.train(make_loader(data, 20, True), num_epochs=3)["loss"] == full.history["loss"]


def test_checkpoints_are_atomic_and_complete(tmp_path, monkeypatch):
    net, trainer = make(out_dir=tmp_path)
    trainer.train(make_loader(sphere(), 40, True), num_epochs=1)
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)                           # weights_only load works
    assert {"model", "optimizer", "history", "rng", "iteration", "epoch"} <= set(state)
    assert state["iteration"] == trainer.iteration and state["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        atomic_torch_save({"x": 1}, path)
    assert path.read_bytes() == before                      # the old checkpoint is intact
    assert not list(tmp_path.glob(".*.tmp"))


def test_solver_failure_is_recorded_not_raised(tmp_path):
    net, trainer = make(out_dir=tmp_path, max_num_steps=1, tol=1e-9)
    history = trainer.train(make_loader(sphere(), 20, True), num_epochs=2)
    assert trainer.failed and not history["completed"]
    failure = history["failure"]
    assert failure["error"] == "MaxNumStepsError" and failure["iteration"] == 0
    line = format_failure(failure)
    assert "\n" not in line and line.startswith("solver failure at iteration 0 (epoch 1, training)")
    assert "MaxNumStepsError" in line
    assert json.loads((tmp_path / "history.json").read_text())["failure"]["error"] == "MaxNumStepsError"


def test_classification_loss_and_accuracy():
    torch.manual_seed(0)
    net = ODENet(2, 8, output_dim=3)
    trainer = Trainer(net, torch.optim.Adam(net.parameters()), loss="cross_entropy", progress=False)
    x, y = torch.randn(30, 2), torch.randint(0, 3, (30,))
    loader = [(x[:15], y[:15]), (x[15:], y[15:])]
    history = trainer.train(loader, num_epochs=1)
    assert len(history["loss"]) == 2 and all(0 <= a <= 1 for a in history["accuracy"])
    with pytest.raises(ValueError, match="cross_entropy"):
        Trainer(net, trainer.optimizer, loss="l1")
