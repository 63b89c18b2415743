"""Figures of the paper with matplotlib (Agg backend; files only, no windows).

histories.py: loss / NFE / accuracy against iterations (mean and spread over repeats), NFE
against loss, accuracy against NFE, validation-loss curves. flows.py: 1-D trajectories, 2-D flows, feature-space evolution during
training, input-space map of predictions.
"""
import matplotlib

matplotlib.use("Agg")

from .flows import (plot_feature_evolution, plot_flows_2d, plot_prediction_map,  # noqa: E402
                    plot_trajectories_1d)
from .histories import (plot_accuracy, plot_accuracy_vs_nfe, plot_histories,  # noqa: E402
                        plot_nfe, plot_nfe_vs_loss, plot_val_curves, stack_histories)

__all__ = ["plot_histories", "plot_accuracy", "plot_accuracy_vs_nfe", "plot_nfe", "plot_nfe_vs_loss",
           "plot_val_curves", "stack_histories",
           "plot_trajectories_1d", "plot_flows_2d", "plot_feature_evolution", "plot_prediction_map"]
