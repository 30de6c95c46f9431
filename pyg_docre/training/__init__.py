"""Training: the objective of eq. 5, the trainer, and one experiment end to end."""
from .evaluation import decode_predictions, predict
from .experiment import format_results_table, run_experiment
from .objective import DocREObjective
from .stopping import StopSignals, TrainingStopped
from .trainer import Trainer, set_seed

__all__ = ["DocREObjective", "StopSignals", "Trainer", "TrainingStopped", "decode_predictions",
           "format_results_table", "predict", "run_experiment", "set_seed"]
