"""Training: ``train(RunConfig)`` runs a whole experiment; ``fit`` is the bare loop."""

from cnnkit.train.loop import fit
from cnnkit.train.run import RunResult, train

__all__ = ["RunResult", "fit", "train"]
