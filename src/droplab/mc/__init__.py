"""Monte-Carlo dropout: sampling at test time, predictive uncertainty, and calibration metrics.

- ``droplab.mc.sampling``: ``mc_dropout`` (dropout samples, everything else stays in eval) and
  ``mc_predict`` (``T`` passes, vectorized, summarized);
- ``droplab.mc.fast``: the blocked fast path ``mc_predict`` takes for MLPs;
- ``droplab.mc.summary``: ``MCPrediction`` and the per-example sums over the passes;
- ``droplab.mc.metrics``: accuracy, NLL, Brier, ECE, reliability, AUROC, Gaussian test
  log-likelihood, RMSE.

Every public name is re-exported here: ``droplab.mc.ece``, ``droplab.mc.mc_predict``, ...
"""

from droplab.mc.metrics import (
    accuracy,
    auroc,
    brier,
    classification_metrics,
    ece,
    gaussian_log_likelihood,
    nll,
    reliability,
    rmse,
)
from droplab.mc.sampling import TASKS, dropout_modules, is_dropout_module, mc_dropout, mc_predict
from droplab.mc.summary import MCPrediction

__all__ = [
    "TASKS",
    "MCPrediction",
    "accuracy",
    "auroc",
    "brier",
    "classification_metrics",
    "dropout_modules",
    "ece",
    "gaussian_log_likelihood",
    "is_dropout_module",
    "mc_dropout",
    "mc_predict",
    "nll",
    "reliability",
    "rmse",
]
