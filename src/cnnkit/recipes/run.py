"""Running a recipe by name: its config (tutorial or fast, the data folder, overrides), the weights
check, the data, each training run, and the measured accuracy beside the reported one.

Data is found as every cnnkit run finds it: the named dataset in ``data_dir`` (``--data-dir``),
``$CNNKIT_DATA_DIR`` or the dataset cache.  Recipes that need torchvision ImageNet weights check
the torch hub cache first and stop with one clear line (the file expected, ``--weights PATH``)
instead of trying a download that cannot succeed offline.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

from cnnkit.config import ModelConfig, RunConfig, dotted_keys, override, with_given
from cnnkit.data.types import DataSplits
from cnnkit.errors import ConfigError, DataError, WeightsError
from cnnkit.recipes.catalogue import RECIPES, Recipe

__all__ = ["check_weights", "get_recipe", "recipe_config", "run_recipe"]


# ----------------------------------------------------------------------------- configuration


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)} (see `cnnkit recipes`)")
    return RECIPES[name]


def recipe_config(recipe: Recipe, fast: bool = False, data_dir: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run configuration of ``recipe``: tutorial or fast settings, then ``data_dir`` and overrides."""
    cfg = recipe.fast if fast else recipe.config
    if data_dir:
        cfg = override(cfg, {"data.data_dir": str(data_dir)})
    return with_given(override(cfg, overrides or {}), dotted_keys(overrides or {}))  # named: a plan keeps them


def _runs(recipe: Recipe, cfg: RunConfig) -> list[tuple[str, float | None, RunConfig]]:
    """(label, reported %, config) for each training run of the recipe."""
    if not recipe.compare:
        return [(cfg.model.name, recipe.reported, cfg)]
    runs = []
    for model, reported in recipe.compare:
        sub = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=model),
                                  train=dataclasses.replace(cfg.train, out=f"{cfg.train.out}/{model}"))
        runs.append((model, reported, sub))
    return runs


def check_weights(recipe: Recipe, model: ModelConfig) -> None:
    """Pretrained torchvision backbones: the weight file must be in the torch hub cache (or --weights given).

    Raises :class:`WeightsError` with one line naming the file expected, before any data is loaded.
    """
    from cnnkit.models.transfer import BACKBONES, hub_weights_path

    spec = BACKBONES.get(model.name)
    if spec is None or model.weights or not model.pretrained or spec.pretrained is not None:
        return  # not a backbone, a local file given, or weights shipped with a package
    url, cached = hub_weights_path(model.name)
    if not cached.is_file():
        raise WeightsError(
            f"recipe {recipe.name} needs torchvision's {model.name} ImageNet weights, expected at {cached} (not "
            f"found; recipes do not download): fetch {url} there (or set TORCH_HOME to a folder holding "
            f"hub/checkpoints/{cached.name}), or pass --weights PATH with a {model.name} state_dict")


# ----------------------------------------------------------------------------- running


def _load(recipe: Recipe, cfg: RunConfig, splits: DataSplits | None) -> DataSplits:
    from cnnkit.data import load_data
    from cnnkit.train.run import model_input_config

    data = model_input_config(cfg).data  # backbones: their input size and RGB
    if splits is not None:
        from cnnkit.data.arrays import conform_splits

        return conform_splits(splits, data.image_size, data.channels)  # tiny given splits at the recipe's size
    try:
        return load_data(data)
    except DataError as exc:
        raise DataError(f"recipe {recipe.name} needs {recipe.needs}. {exc}") from None


def _train_row(label: str, reported: float | None, cfg: RunConfig, splits: DataSplits) -> dict[str, Any]:
    from cnnkit.commands.train import train

    start = time.perf_counter()
    result = train(cfg, splits=splits)
    m = result.metrics
    return {"label": label, "model": cfg.model.name, "reported": reported,
            "measured": round(100.0 * m["accuracy"], 2) if m else None, "split": m.get("split"), "n": m.get("n"),
            "epochs": len(result.history), "seconds": round(time.perf_counter() - start, 1),
            "run_dir": str(result.run_dir) if result.run_dir is not None else None}


def _sobel_row(cfg: RunConfig) -> dict[str, Any]:
    from cnnkit.visualize.figures import save_figure
    from cnnkit.visualize.sobel import default_image, plot_sobel, sobel

    start = time.perf_counter()
    image = default_image()  # uint8 (300, 451, 3)
    result = sobel(image)  # float32 (H, W) maps
    path = save_figure(plot_sobel(image, result), Path(cfg.train.out) / "sobel.png")
    return {"label": "sobel", "model": "-", "reported": None, "measured": None, "split": None,
            "n": 1, "epochs": 0, "seconds": round(time.perf_counter() - start, 1), "run_dir": str(path.parent),
            "output": str(path), "max_magnitude": round(float(result["magnitude"].max()), 4)}


def run_recipe(name: str, fast: bool = False, data_dir: str | None = None,
               overrides: Mapping[str, Any] | None = None, splits: DataSplits | None = None) -> dict[str, Any]:
    """Run recipe ``name`` end to end; return measured vs reported accuracy (percent) per training run.

    ``fast`` picks the modern settings; ``data_dir`` is where the named dataset is looked for;
    ``overrides`` replaces config fields (``{"train.epochs": 1}``); ``splits`` trains on given
    data instead of loading the recipe's (conformed to its image size and channels).

    Returns ``{"recipe", "variant", "data", "source", "reported", "measured", "seconds", "rows"}``
    with one row per trained model: label, model, reported, measured, split, n, epochs, seconds,
    run_dir.  ``reported``/``measured`` at the top are the first row's.
    """
    recipe = get_recipe(name)
    cfg = recipe_config(recipe, fast, data_dir, overrides)
    start = time.perf_counter()
    if recipe.kind == "sobel":
        rows = [_sobel_row(cfg)]
    else:
        runs = _runs(recipe, cfg)
        for _, _, run_cfg in runs:
            check_weights(recipe, run_cfg.model)
        data = _load(recipe, cfg, splits)
        rows = [_train_row(label, reported, run_cfg, data) for label, reported, run_cfg in runs]
    return {"recipe": recipe.name, "variant": "fast" if fast else "tutorial", "data": recipe.data,
            "source": recipe.source, "reported": rows[0]["reported"], "measured": rows[0]["measured"],
            "seconds": round(time.perf_counter() - start, 1), "rows": rows}
