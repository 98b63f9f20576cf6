"""cnnkit: from labelled images to a trained, evaluated, explained and served CNN.

Python use in a few lines::

    import cnnkit
    result = cnnkit.train_model(cnnkit.make_config(data="mnist-mini", model="lenet5", epochs=5))
    print(result.metrics["accuracy"], result.run_dir)
    cnnkit.predict(result.run_dir, ["digit.png"])

In a notebook the training shows a bar and a table filled in epoch by epoch, the result shows
itself as a summary with its curves and confusion matrix, and ``result.plot_curves()``,
``plot_confusion()``, ``plot_top_losses(k)``, ``plot_gradcam(image)`` and ``plot_label_issues(k)``
draw inline.

The public names (``dir(cnnkit)``; each has its docstring, e.g. ``help(cnnkit.train_model)``):

    make_config(**settings)      a checked RunConfig from flat names (data=, model=, epochs=, labels=...)
    train_model(cfg)             train and write the run folder; returns a TrainResult
    evaluate_model(run, data)    metrics of a checkpoint on a dataset
    predict(run, files)          predictions for image files; Predictor for repeated use
    load_data(cfg.data)          the train/val/test images as arrays
    build_model(cfg.model)       a model by name; summary(name) shows Keras' table; summarize() gives its numbers
    load_checkpoint(path)        a checkpoint's model, preprocessing and run config
    trusted_code()               allow models named by import path
    RunConfig, DataConfig, ModelConfig, OptimConfig, TrainConfig, AugmentConfig, Preprocess: the settings
    cnnkit.visualize             the pictures (plot_* -> matplotlib Figure)
"""

from __future__ import annotations

from typing import Any

from cnnkit.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Preprocess,
    RunConfig,
    TrainConfig,
    make_config,
)

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
    "summary": ("cnnkit.models.summary", "summary"),
    "TrainResult": ("cnnkit.commands.result", "TrainResult"),
    "trusted_code": ("cnnkit.models.custom", "trusted_code"),
}


_SUBPACKAGES = ("visualize",)  # reachable as cnnkit.visualize without importing it first


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"cnnkit.{name}")
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, "__version__", *_SUBPACKAGES})


__all__ = ["AugmentConfig", "DataConfig", "ModelConfig", "OptimConfig", "Preprocess", "RunConfig", "TrainConfig",
           "make_config", *_LAZY]
