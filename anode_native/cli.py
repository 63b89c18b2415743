"""The `anode` command line.

    anode demo [--out DIR]                      NODE / ANODE / ResNet on g(x), figures, summary.md
    anode experiment NAME | --list              an experiment of the paper from a packaged config
    anode train --config FILE.yaml              any registered model and dataset from a config
    anode report RUN_DIR... [--out DIR]         Table 1 and the image figures from saved histories

`anode train` and `anode experiment` run data-parallel under torchrun
(`torchrun --nproc_per_node=N -m anode_native train --config ...`; gloo on the CPU, NCCL with
--device cuda); see training/distributed.py.

Subcommands live in COMMANDS; another module adds one with `register_command`.
Config mistakes print one line naming the key and the allowed values (exit status 2); a solver
failure during `train` prints one line (exit status 1), never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

Handler = Callable[[argparse.Namespace], int]
COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def register_command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     handler: Handler) -> None:
    """Add a subcommand: `add_arguments(parser)` declares its options, `handler(args)` runs it
    and returns the exit status."""
    COMMANDS[name] = (help, add_arguments, handler)


def _log(message: str) -> None:
    print(message, flush=True)


def _common(parser: argparse.ArgumentParser, out_default: Optional[str]) -> None:
    parser.add_argument("--out", default=out_default,
                        help=f"output directory (default: {out_default or 'runs/<name>'})")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the config's, else cpu)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="directory of the dataset's files (overrides dataset.root)")
    parser.add_argument("--seed", type=int, default=None, help="base seed (data and initializations)")
    parser.add_argument("--repeats", type=int, default=None, help="override the number of repeats")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoints in --out (same result as an uninterrupted run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 for the toy problems, whose tiny batches run "
                             "fastest single-threaded; torch's default otherwise)")


def _set_threads(args: argparse.Namespace, default: Optional[int]) -> None:
    threads = args.threads if args.threads is not None else default
    if threads is not None:
        import torch
        torch.set_num_threads(max(1, threads))


def _overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    if args.device is not None:
        out["device"] = args.device
    if args.seed is not None:
        out["seed"] = args.seed
    if getattr(args, "repeats", None) is not None:
        out["repeats"] = args.repeats
    if getattr(args, "epochs", None) is not None:
        out["training"] = {"epochs": args.epochs}
    if getattr(args, "data_root", None) is not None:
        out["dataset"] = {"root": args.data_root}
    return out


def _progress(args: argparse.Namespace) -> Optional[bool]:
    return False if args.no_progress else None


# -- demo ------------------------------------------------------------------------------------------
def _demo_args(p: argparse.ArgumentParser) -> None:
    _common(p, "demo_out")
    p.add_argument("--parts", nargs="+", default=None, metavar="PART",
                   help="run only these parts (g1d, sphere1d, sphere2d, generalization)")


def _demo(args: argparse.Namespace) -> int:
    from .training.demo import run_demo
    _set_threads(args, 1)
    run_demo(args.out, repeats=args.repeats, device=args.device, seed=args.seed,
             progress=_progress(args), resume=args.resume, parts=args.parts, log=_log)
    return 0


# -- experiment ------------------------------------------------------------------------------------
def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the packaged experiments")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    _common(p, None)


def _experiment(args: argparse.Namespace) -> int:
    from .training.experiments import experiment_config, list_experiments
    if args.list or not args.name:
        experiments = list_experiments()
        width = max(map(len, experiments), default=0)
        for name, description in experiments.items():
            print(f"{name:{width}s}  {description}")
        return 0 if args.list else 2
    config = experiment_config(args.name, _overrides(args))
    return _run(args, config, failures_exit=0)


# -- train -----------------------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (see anode_native/configs/ for examples)")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    _common(p, None)


def _is_toy(config: dict) -> bool:
    import inspect
    from .data.toy import ToyDataset
    from .training.registry import DATASETS
    factory = DATASETS[config["dataset"]["name"]].factory
    return inspect.isclass(factory) and issubclass(factory, ToyDataset)


def _train(args: argparse.Namespace) -> int:
    from .training.config import load_config
    config = load_config(args.config, _overrides(args))
    return _run(args, config, failures_exit=1)


def _run(args: argparse.Namespace, config: dict, failures_exit: int) -> int:
    """Train a validated config, in this process or as one rank of a torchrun group."""
    from .training.distributed import init_distributed, shutdown_distributed
    from .training.experiments import run_experiment
    _set_threads(args, 1 if _is_toy(config) else None)
    dist = init_distributed(config["device"])
    try:
        out = Path(args.out or Path("runs") / config["name"])
        result, _ = run_experiment(config, out, resume=args.resume, progress=_progress(args),
                                   log=_log, dist=dist)
        if dist.is_main:
            _log(f"wrote {out / 'summary.md'}")
        dist.barrier()   # no rank exits (and makes torchrun stop the others) before rank 0 has written
    finally:
        shutdown_distributed(dist)
    return failures_exit if result.failures else 0


# -- report ----------------------------------------------------------------------------------------
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output directories of anode train/experiment")
    p.add_argument("--out", default=None,
                   help="where report.md and the figures go (default: RUN_DIR/report for one "
                        "RUN_DIR, else ./report)")


def _report(args: argparse.Namespace) -> int:
    from .training.report import write_report
    out = Path(args.out) if args.out else (Path(args.run_dirs[0]) / "report" if len(args.run_dirs) == 1
                                           else Path("report"))
    path = write_report(args.run_dirs, out, log=_log)
    text = path.read_text()
    print(text[: text.find("\n![")] if "\n![" in text else text, end="")
    _log(f"wrote {path}")
    return 0


register_command("demo", "train NODE, ANODE and ResNet on g(x) in 1-D and 2-D; figures and summary.md",
                 _demo_args, _demo)
register_command("experiment", "run an experiment of the paper from a packaged config (--list to see them)",
                 _experiment_args, _experiment)
register_command("train", "train models on a dataset described by a YAML config", _train_args, _train)
register_command("report", "rebuild the results table and figures from saved runs", _report_args, _report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anode", description="Augmented Neural ODEs on a native ODE engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from .training.config import ConfigError
    try:
        return COMMANDS[args.command][2](args)
    except ConfigError as err:
        print(f"anode {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anode {args.command}: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
