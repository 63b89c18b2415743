"""Image experiments: parameter counts of every shipped image config, a short real MNIST training
run from the shared files, `anode report` (Table 1 and figures from saved histories), the
training options the image runs use, and --device cuda without a GPU."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from anode_native.cli import main
from anode_native.nn import count_parameters
from anode_native.training.config import ConfigError, load_config
from anode_native.training.experiments import experiment_config
from anode_native.training.runner import build_datasets, build_model, input_shape_of, output_dim_of
from conftest import shared_mnist_dir

REPO = Path(__file__).resolve().parents[1]

# Trainable parameters of the shipped configs (time-dependent convolutions: time is one more
# input channel of each of the three convolutions). Without the time channel the MNIST pair has
# the paper's counts (appendix): 84,395 and 84,816.
PARAMETERS = {
    "mnist_node": (85316, 84395), "mnist_anode": (85462, 84816),
    "cifar10_node": (173611, 172358), "cifar10_anode": (172452, 171799),
    "svhn_node": (173611, 172358), "svhn_anode": (172452, 171799),
    "digits_node": (10316, 9995), "digits_anode": (9622, 9376),
    "mnist_reduced_node": (10380, 10219), "mnist_reduced_anode": (49750, 49584),
}
IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32), "digits": (1, 8, 8)}




@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_counts_of_the_shipped_image_configs(name):
    with_time, without_time = PARAMETERS[name]
    config = experiment_config(name)
    (model_cfg,) = config["models"].values()
    shape = IMAGE_SHAPES[config["dataset"]["name"]]
    model = build_model(model_cfg, shape, output_dim_of(config))
    static = build_model(dict(model_cfg, time_dependent=False), shape, output_dim_of(config))
    print(f"{name}: {count_parameters(model):,} parameters ({count_parameters(static):,} without time)")
    assert (count_parameters(model), count_parameters(static)) == (with_time, without_time)
    if name.startswith(("mnist", "cifar10", "svhn")) and "reduced" not in name:
        # the pairs the paper compares have (about) the same number of parameters
        other = name.replace("_anode", "_node") if name.endswith("_anode") else name.replace("_node", "_anode")
        assert abs(with_time - PARAMETERS[other][0]) / with_time < 0.01


def test_parameter_counts_are_printed_at_start(tmp_path, capsys):
    cfg = {"name": "p", "dataset": {"name": "digits", "subset": 16},
           "models": {"ANODE": {"name": "convodenet", "num_filters": 2, "augment_dim": 1,
                                "method": "euler"}},
           "training": {"epochs": 1, "batch_size": 16, "eval_train": False}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    model = build_model(cfg["models"]["ANODE"], (1, 8, 8), 10)
    assert f"ANODE rep0: {count_parameters(model):,} parameters" in capsys.readouterr().out


@pytest.mark.skipif(shared_mnist_dir() is None,
                    reason="real MNIST not found ($ANODE_MNIST_DIR or ../shared/data/mnist)")
def test_short_real_mnist_training_and_report(tmp_path, capsys):
    # mnist_reduced_anode, shrunk: 64 training images, 2 steps of 32, 4 filters; the adjoint as shipped
    out = tmp_path / "mnist_small"
    overrides = {"dataset": {"subset": 64}, "val_dataset": {"subset": 40},
                 "models": {"ANODE": {"num_filters": 4}},
                 "training": {"epochs": 1, "batch_size": 32, "eval_batch_size": 40}}
    config = tmp_path / "mnist_small.yaml"
    raw = yaml.safe_load((REPO / "anode_native" / "configs" / "mnist_reduced_anode.yaml").read_text())
    from anode_native.training.config import merge
    config.write_text(yaml.safe_dump(merge(raw, overrides)))
    assert main(["train", "--config", str(config), "--data-root", str(shared_mnist_dir()),
                 "--out", str(out), "--no-progress"]) == 0
    history = json.loads((out / "ANODE" / "rep0" / "history.json").read_text())
    assert history["completed"] and len(history["loss"]) == 2
    assert all(n > 0 for n in history["nfe_forward"] + history["nfe_backward"])
    assert all(0.0 < loss < 5.0 for loss in history["loss"])
    assert history["val"]["iteration"] == [2] and 0.0 <= history["val"]["accuracy"][0] <= 1.0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["dataset"]["root"] == str(shared_mnist_dir())
    assert saved["models"]["ANODE"]["adjoint"] is True
    for fig in ("losses", "accuracy", "nfe", "nfe_vs_loss", "accuracy_vs_nfe"):
        assert (out / f"{fig}.png").stat().st_size > 5000, fig
    results = json.loads((out / "results.json").read_text())["ANODE"][0]
    assert "train_loss" not in results                           # eval_train: false
    assert results["val_accuracy"] == history["val"]["accuracy"][-1]  # reused, not recomputed
    capsys.readouterr()

    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    report = (out / "report" / "report.md").read_text()
    acc = 100 * history["val"]["accuracy"][-1]
    assert f"| ANODE | {acc:.1f}% |" in report and f"| ANODE | {acc:.1f}% |" in printed
    params = count_parameters(build_model(saved["models"]["ANODE"], (1, 28, 28), 10))
    assert params == results["parameters"] == 47302
    assert f"| mnist_reduced_anode | ANODE | {params:,} |" in report
    assert (out / "report" / "mnist_reduced_accuracy_vs_nfe.png").stat().st_size > 5000


def _tiny(name, label, augment_dim, repeats):
    return {"name": name, "seed": 0, "repeats": repeats,
            "dataset": {"name": "digits", "subset": 32, "subset_seed": 1},
            "val_dataset": {"train": False, "subset": 20},
            "models": {label: {"name": "convodenet", "num_filters": 3, "augment_dim": augment_dim,
                               "time_dependent": True, "method": "rk4"}},
            "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "eval_train": False}}


def test_report_builds_table_1_from_saved_histories(tmp_path, capsys):
    dirs = []
    for name, label, aug in (("tiny_node", "NODE", 0), ("tiny_anode", "ANODE", 2)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_tiny(name, label, aug, repeats=2)))
        dirs.append(tmp_path / name)
        assert main(["train", "--config", str(path), "--out", str(dirs[-1]), "--no-progress"]) == 0
    for d in dirs:   # the report needs the histories only
        for ckpt in d.glob("*/rep*/checkpoint.pt"):
            ckpt.unlink()
    capsys.readouterr()
    assert main(["report", *map(str, dirs), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    lines = text.splitlines()
    assert "|  | tiny |" in lines                                   # one column: tiny_node + tiny_anode
    for label, d in (("NODE", dirs[0]), ("ANODE", dirs[1])):
        accs = [json.loads((d / label / f"rep{r}" / "history.json").read_text())["val"]["accuracy"][-1]
                for r in (0, 1)]
        mean, std = 50 * (accs[0] + accs[1]), 50 * abs(accs[0] - accs[1])
        assert f"| {label} | {mean:.1f} ± {std:.1f}% |" in lines, text
        row = next(line for line in lines if line.startswith(f"| {d.name} | {label} |"))
        assert "| 4.0 ± 0.0 | 4.0 ± 0.0 |" in row and row.endswith("| 2/2 |")   # rk4: 4 NFE each way
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["tiny_anode"]["ANODE"][1]["iterations"] == 4
    assert saved["tiny_node"]["NODE"][0]["parameters"] == json.loads(
        (dirs[0] / "results.json").read_text())["NODE"][0]["parameters"]
    for fig in ("loss", "nfe", "accuracy", "nfe_vs_loss", "accuracy_vs_nfe"):
        assert (tmp_path / "rep" / f"tiny_{fig}.png").stat().st_size > 5000


def test_report_of_a_directory_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no config.yaml" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_device_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert main(["experiment", "mnist_node", "--device", "cuda", "--data-root", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "'cuda'" in err and "no CUDA device" in err and "use cpu" in err


@pytest.mark.parametrize("change, words", [
    ({"shuffle": "yes"}, ["training.shuffle", "true or false"]),
    ({"eval_train": 1}, ["training.eval_train", "true or false"]),
    ({"dtype": "float16"}, ["training.dtype", "float32, float64"]),
])
def test_training_options_are_validated(change, words):
    raw = _tiny("t", "NODE", 0, 1)
    raw["training"].update(change)
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert all(w in str(info.value) for w in words)


def test_float64_and_unshuffled_training(tmp_path):
    raw = _tiny("t", "NODE", 0, 1)
    raw["training"].update(dtype="float64", shuffle=False)
    config = load_config(raw)
    train, _ = build_datasets(config)
    from anode_native.training.runner import run_config
    result = run_config(config, tmp_path, log=lambda m: None)
    (run,) = result.runs["NODE"]
    assert all(p.dtype == torch.float64 for p in run.model.parameters())
    assert input_shape_of(train) == (1, 8, 8) and len(run.history["loss"]) == 4
    again = run_config(config, tmp_path / "again", log=lambda m: None).runs["NODE"][0]
    assert again.history["loss"] == run.history["loss"]
