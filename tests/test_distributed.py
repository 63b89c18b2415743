"""Data-parallel training: 2 CPU processes under torchrun (gloo) end with identical weights, equal
to a single-process run with the same global batch; sharding of batches and evaluation."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from anode_native.cli import main
from anode_native.training.config import ConfigError
from anode_native.training.distributed import DistContext, unwrap

REPO = Path(__file__).resolve().parents[1]

# Fixed-grid rk4 (one step over [0, 1]) so that every sample's solve is independent of the rest
# of its batch: with dopri5 the error norm is taken over the whole (shard of the) batch, so the
# steps of a rank's half batch differ from those of the full batch and the runs differ by the
# solver's tolerance, not by rounding. Float64 and no shuffling (rank r takes items r, r + 2,
# ..., so the union of the shards of each step is the single process's batch) leave only
# summation-order rounding between the two runs. NODE: direct backprop; ANODE: the adjoint.
TINY = {
    "name": "ddp_tiny", "seed": 0, "repeats": 1,
    "dataset": {"name": "digits", "subset": 64, "subset_seed": 0},
    "val_dataset": {"train": False, "subset": 30},
    "models": {
        "NODE": {"name": "convodenet", "num_filters": 4, "time_dependent": True, "method": "rk4",
                 "adjoint": False},
        "ANODE": {"name": "convodenet", "num_filters": 4, "augment_dim": 1, "time_dependent": True,
                  "method": "rk4", "adjoint": True},
    },
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "shuffle": False, "dtype": "float64"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_processes_match_each_other_and_a_single_process(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           "-m", "anode_native", "train", "--config", str(config), "--out", str(tmp_path / "ddp"),
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("2 processes (gloo)") == 2          # rank 0 alone logs
    assert proc.stdout.count("wrote ") == 1

    assert main(["train", "--config", str(config), "--out", str(tmp_path / "single"),
                 "--no-progress", "--threads", "1"]) == 0

    ddp_results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    single_results = json.loads((tmp_path / "single" / "results.json").read_text())
    for label in ("NODE", "ANODE"):
        # both ranks end with identical weights (max |w_rank0 - w_rank1| over all parameters)
        assert ddp_results[label][0]["replica_max_abs_diff"] == 0.0
        assert "replica_max_abs_diff" not in single_results[label][0]
        # and they equal the single process's weights to rounding
        ddp, single = weights(tmp_path / "ddp" / label / "rep0"), weights(tmp_path / "single" / label / "rep0")
        assert ddp.keys() == single.keys()
        for key in ddp:
            assert ddp[key].dtype == torch.float64
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-10, atol=1e-12, msg=key)
        # the training moved them (the comparison is not of two initializations)
        h_ddp = json.loads((tmp_path / "ddp" / label / "rep0" / "history.json").read_text())
        h_one = json.loads((tmp_path / "single" / label / "rep0" / "history.json").read_text())
        assert len(h_ddp["loss"]) == len(h_one["loss"]) == 8
        assert h_ddp["loss"][-1] < h_ddp["loss"][0]
        # metrics reduced over ranks: the global batch's loss and accuracy, NFE of each rank's solve
        for key in ("loss", "accuracy"):
            assert h_ddp[key] == pytest.approx(h_one[key], rel=1e-9, abs=1e-12)
        assert h_ddp["nfe_forward"] == h_one["nfe_forward"] == [4] * 8
        assert h_ddp["nfe_backward"] == h_one["nfe_backward"] == [4] * 8
        # evaluation split across ranks and summed: the whole test subset, exactly once
        for key in ("val_loss", "val_accuracy"):
            assert ddp_results[label][0][key] == pytest.approx(single_results[label][0][key], rel=1e-9)
        assert h_ddp["val"]["iteration"] == [4, 8]
    assert not list((tmp_path / "ddp").glob("**/*.tmp"))


def test_train_shards_union_to_the_single_process_batches():
    data = torch.utils.data.TensorDataset(torch.arange(20.0))
    single = [b[0].tolist() for b in torch.utils.data.DataLoader(data, batch_size=8)]
    shards = [[b[0].tolist() for b in DistContext(rank, 2).train_loader(data, 8, False, 0)]
              for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(single) == 3
    for step, batch in enumerate(single[:2]):
        assert sorted(shards[0][step] + shards[1][step]) == batch
    # the last, short batch is padded with a repeated item so both ranks take the step
    assert sorted(set(shards[0][2] + shards[1][2])) == single[2]
    # shuffled: the same permutation on both ranks (seed + epoch), disjoint shards
    loaders = [DistContext(rank, 2).train_loader(data, 8, True, 3) for rank in (0, 1)]
    items = [sum((b[0].tolist() for b in loader), []) for loader in loaders]
    assert sorted(items[0] + items[1]) == list(map(float, range(20)))


def test_evaluation_shards_cover_every_item_once():
    data = torch.utils.data.TensorDataset(torch.arange(11.0))
    seen = [x for rank in range(3) for b in DistContext(rank, 3).eval_loader(data, 2) for x in b[0].tolist()]
    assert sorted(seen) == list(map(float, range(11)))


def test_global_batch_must_split_evenly_and_single_process_is_a_no_op():
    with pytest.raises(ConfigError, match="training.batch_size.*divisible by the number of processes"):
        DistContext(0, 3).local_batch_size(16)
    single = DistContext()
    model = torch.nn.Linear(2, 2)
    assert not single.enabled and single.is_main and single.wrap(model) is model
    assert unwrap(model) is model and single.sum([1.0, 2.0]) == [1.0, 2.0]
    assert single.replica_divergence(model) == 0.0


class _PeerFailed(DistContext):
    """A 2-rank context whose other rank reports a failed solve (no process group needed)."""

    def failed_ranks(self, failed: bool):
        return [0]

    def sum(self, values):
        raise AssertionError("no metrics may be reduced after a failed forward pass")


def test_a_failure_on_another_rank_stops_this_rank_before_backward(tmp_path):
    from anode_native.nn import ODENet
    from anode_native.training.trainer import PeerSolverError, Trainer

    model = ODENet(2, 4)
    trainer = Trainer(model, torch.optim.Adam(model.parameters()), out_dir=tmp_path,
                      dist=_PeerFailed(rank=1, world_size=2))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    with pytest.raises(PeerSolverError, match=r"rank\(s\) 0 failed"):
        trainer._step(x, y)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    history = trainer.train([(x, y)], num_epochs=1)
    assert history["failure"]["error"] == "PeerSolverError"
    assert not (tmp_path / "checkpoint.pt").exists()          # rank 1 writes nothing
