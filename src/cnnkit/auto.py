"""The automatic default (``--model auto``): planning from the data and the time budget.

Lives in :mod:`cnnkit.train.auto` (``train`` dispatches to it); this module is its public name.
"""

from cnnkit.train.auto import (AUTO, DEFAULT_TIME, DataStats, Plan, choose_backbone, data_stats, plan_run,
                               read_choice, train_auto)

__all__ = ["AUTO", "DEFAULT_TIME", "DataStats", "Plan", "choose_backbone", "data_stats", "plan_run", "read_choice",
           "train_auto"]
