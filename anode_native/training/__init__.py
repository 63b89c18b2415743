"""Training: the Trainer (histories, NFE, checkpoints, exact resume), configs and registries,
the runner for repeats, the paper's figures, the packaged experiments and the demo."""
from .checkpoint import atomic_torch_save, load_checkpoint, seed_everything
from .config import ConfigError, load_config, validate_config
from .registry import DATASETS, MODELS, register_dataset, register_model
from .runner import ExperimentResult, RunResult, build_datasets, build_model, run_config
from .trainer import LOSSES, Trainer, format_failure

__all__ = ["Trainer", "LOSSES", "format_failure", "ConfigError", "load_config", "validate_config",
           "DATASETS", "MODELS", "register_dataset", "register_model", "run_config",
           "build_datasets", "build_model", "ExperimentResult", "RunResult",
           "atomic_torch_save", "load_checkpoint", "seed_everything"]
