"""Training: ``train(RunConfig)`` runs a whole experiment; ``fit`` is the bare loop.

(:func:`cnnkit.commands.train.train`, also ``cnnkit.train_model``, adds the finished run folder's pictures,
metrics files and report.)
"""

from cnnkit.train.loop import fit
from cnnkit.train.resume import Resume
from cnnkit.train.run import RunResult, train

__all__ = ["Resume", "RunResult", "fit", "train"]
