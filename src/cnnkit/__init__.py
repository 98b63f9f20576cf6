"""cnnkit: from labelled images to a trained, evaluated, explained and served CNN.

Python use in a few lines::

    import cnnkit
    result = cnnkit.train_model(cnnkit.make_config(data="mnist-mini", model="lenet5", epochs=5))
    print(result.metrics["accuracy"], result.run_dir)
    cnnkit.predict(result.run_dir, ["digit.png"])
"""

from __future__ import annotations

from typing import Any

from cnnkit.config import (AugmentConfig, DataConfig, ModelConfig, OptimConfig, Preprocess, RunConfig, TrainConfig,
                           make_config)

__version__ = "0.1.0"

# heavy entry points (they import torch) resolve on first use, so `import cnnkit` stays cheap
_LAZY = {
    # (named apart from the subpackages cnnkit.train / cnnkit.evaluate, which would shadow them)
    "train_model": ("cnnkit.commands.train", "train"),
    "evaluate_model": ("cnnkit.evaluate.evaluate", "evaluate"),
    "predict": ("cnnkit.inference.load", "predict"),
    "Predictor": ("cnnkit.inference.torch_backend", "Predictor"),
    "load_data": ("cnnkit.data", "load_data"),
    "build_model": ("cnnkit.models", "build_model"),
    "load_checkpoint": ("cnnkit.inference.checkpoint", "load_checkpoint"),
    "summarize": ("cnnkit.models.summary", "summarize"),
    "trusted_code": ("cnnkit.models.custom", "trusted_code"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


__all__ = ["AugmentConfig", "DataConfig", "ModelConfig", "OptimConfig", "Preprocess", "RunConfig", "TrainConfig",
           "make_config", *_LAZY]
