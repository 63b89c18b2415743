"""The `anode` command line end to end on tiny configs: train, resume, figures, summary,
bad configs, solver failures, packaged experiments and the demo's claim checks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from anode_native.cli import main
from anode_native.training.config import ConfigError, load_config
from anode_native.training.experiments import experiment_config, list_experiments

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny", "seed": 0, "repeats": 2,
    "dataset": {"name": "concentric_sphere", "dim": 2, "num_points_inner": 20, "num_points_outer": 40},
    "models": {"NODE": {"name": "odenet", "hidden_dim": 8, "time_dependent": True},
               "ANODE": {"name": "odenet", "hidden_dim": 8, "time_dependent": True, "augment_dim": 1},
               "ResNet": {"name": "resnet", "hidden_dim": 8, "num_layers": 2}},
    "training": {"epochs": 2, "batch_size": 20, "lr": 0.01},
}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write(tmp_path, config, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_end_to_end_writes_histories_checkpoints_figures_and_summary(tmp_path, capsys):
    cfg = dict(TINY, figures=["losses", "nfe", "nfe_vs_loss", "flows_2d", "feature_evolution"])
    out = tmp_path / "out"
    assert main(["train", "--config", str(write(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 0
    for label in ("NODE", "ANODE", "ResNet"):
        for rep in (0, 1):
            run = out / label / f"rep{rep}"
            history = json.loads((run / "history.json").read_text())
            assert len(history["loss"]) == 6 and history["completed"]
            assert (run / "history.csv").is_file() and (run / "checkpoint.pt").is_file()
            if label != "ResNet":
                assert all(n > 0 for n in history["nfe_forward"] + history["nfe_backward"])
    for fig in ("losses", "nfe", "nfe_vs_loss", "flows_2d", "feature_evolution"):
        assert (out / f"{fig}.png").stat().st_size > 5000
    summary = (out / "summary.md").read_text()
    assert "| model | params | final loss" in summary
    for label in ("NODE", "ANODE", "ResNet"):
        assert f"| {label} |" in summary
    results = json.loads((out / "results.json").read_text())
    assert results["ANODE"][0]["parameters"] == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3 + 3 + 1
    assert yaml.safe_load((out / "config.yaml").read_text())["models"]["NODE"]["hidden_dim"] == 8


def test_resume_continues_to_the_uninterrupted_result(tmp_path):
    cfg = dict(TINY, repeats=1, models={"ANODE": TINY["models"]["ANODE"]})
    path = write(tmp_path, cfg)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--config", str(path), "--out", str(a), "--no-progress", "--epochs", "3"]) == 0
    assert main(["train", "--config", str(path), "--out", str(b), "--no-progress", "--epochs", "1"]) == 0
    assert main(["train", "--config", str(path), "--out", str(b), "--no-progress", "--epochs", "3",
                 "--resume"]) == 0
    ha = json.loads((a / "ANODE/rep0/history.json").read_text())
    hb = json.loads((b / "ANODE/rep0/history.json").read_text())
    assert len(ha["loss"]) == 9
    assert ha["loss"] == hb["loss"] and ha["nfe_forward"] == hb["nfe_forward"]
    sa = torch.load(a / "ANODE/rep0/checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(b / "ANODE/rep0/checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("change, words", [
    ({"training": {"loss": "l1"}}, ["training.loss", "cross_entropy, huber, mse"]),
    ({"dataset": {"name": "spheres"}}, ["dataset.name", "concentric_sphere", "data1d", "shifted_sines"]),
    ({"dataset": {"radius": 2}}, ["dataset.radius", "num_points_inner"]),
    ({"models": {"NODE": {"name": "odenet", "hidden": 3}}}, ["models.NODE.hidden", "hidden_dim"]),
    ({"models": {"NODE": {"name": "odenet", "non_linearity": "gelu"}}}, ["non_linearity", "relu, softplus, tanh"]),
    ({"models": {"X": {"name": "transformer"}}}, ["models.X.name", "convodenet, odenet, resnet"]),
    ({"epochs": 3}, ["'epochs'", "training"]),
    ({"training": {"batch_size": 0}}, ["training.batch_size", ">= 1"]),
    ({"device": "tpu"}, ["device", "cpu, cuda"]),
    ({"figures": ["pretty"]}, ["figures", "losses"]),
])
def test_bad_configs_name_the_key_and_the_allowed_values(tmp_path, capsys, change, words):
    cfg = json.loads(json.dumps(TINY))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and "name" not in value:
            cfg[key].update(value)
        else:
            cfg[key] = value
    code = main(["train", "--config", str(write(tmp_path, cfg)), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err
    with pytest.raises(ConfigError):
        load_config(cfg)


def test_solver_failure_is_one_line_and_exit_status_1(tmp_path, capsys):
    cfg = dict(TINY, repeats=1, models={"NODE": {"name": "odenet", "hidden_dim": 8,
                                                  "max_num_steps": 1, "tol": 1e-9}})
    out = tmp_path / "o"
    assert main(["train", "--config", str(write(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    lines = [l for l in captured.out.splitlines() if "solver failure" in l]
    assert len(lines) == 1 and "MaxNumStepsError" in lines[0] and "Traceback" not in captured.err
    assert "solver failure" in (out / "summary.md").read_text()


def test_packaged_experiments_are_listed_and_valid(capsys):
    assert main(["experiment", "--list"]) == 0
    listed = capsys.readouterr().out
    names = list_experiments()
    toys = {"g1d", "sphere1d", "sphere2d", "sines2d", "generalization"}
    assert toys <= set(names)
    for name in names:
        assert name in listed
        assert experiment_config(name)["models"]                # every packaged config is valid
    for name in toys:
        assert experiment_config(name)["training"]["loss"] == "huber"
    s2 = experiment_config("sphere2d")
    assert s2["models"]["ANODE"]["augment_dim"] == 1 and s2["models"]["NODE"].get("augment_dim", 0) == 0
    assert s2["training"]["batch_size"] == 64 and s2["training"]["lr"] == 1e-3
    assert main(["experiment", "nonesuch"]) == 2
    assert "g1d" in capsys.readouterr().err


def test_experiment_command_runs_a_packaged_config(tmp_path):
    out = tmp_path / "g1d"
    code = main(["experiment", "g1d", "--out", str(out), "--epochs", "1", "--repeats", "1",
                 "--no-progress"])
    assert code == 0 and (out / "trajectories_1d.png").is_file()
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"NODE-identity", "NODE-g1d", "ANODE-g1d"}


def test_demo_runs_and_checks_the_claims(tmp_path, monkeypatch):
    from anode_native.training import demo
    tiny = {"repeats": 1, "training": {"epochs": 1},
            "dataset": {"num_points_inner": 20, "num_points_outer": 40}}
    monkeypatch.setattr(demo, "DEMO_PARTS", (("sphere1d", tiny), ("sphere2d", tiny)))
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "The paper's claims, measured" in summary and "| NODE |" in summary
    claims = json.loads((tmp_path / "demo.json").read_text())["claims"]
    assert [c["claim"][:9] for c in claims] == ["g(x) in 1", "g(x) in 2"]
    assert (tmp_path / "sphere2d" / "flows_2d.png").is_file()


def test_python_dash_m_entry_point(tmp_path):
    path = write(tmp_path, dict(TINY, repeats=1, models={"ResNet": TINY["models"]["ResNet"]}))
    proc = subprocess.run([sys.executable, "-m", "anode_native", "train", "--config", str(path),
                           "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "summary.md").is_file()


def test_resume_with_a_different_model_is_a_clear_error(tmp_path, capsys):
    cfg = dict(TINY, repeats=1, models={"ANODE": TINY["models"]["ANODE"]})
    out = tmp_path / "o"
    assert main(["train", "--config", str(write(tmp_path, cfg)), "--out", str(out), "--no-progress"]) == 0
    cfg["models"]["ANODE"] = dict(cfg["models"]["ANODE"], hidden_dim=4)
    code = main(["train", "--config", str(write(tmp_path, cfg)), "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot resume" in err and "Traceback" not in err
