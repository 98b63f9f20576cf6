"""``cnnkit inspect``: the dataset report (computed in :mod:`cnnkit.data.inspection`), printed,
and optionally saved as JSON and as a grid of sample images (drawn by :mod:`cnnkit.visualize`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.inspection import inspect_data, render_inspection
from cnnkit.io import atomic_write_text


def inspect_command(source: str, samples: str | None = None, n: int = 16, data_dir: str | None = None,
                    cache_dir: str | None = None, json_out: str | None = None, console: Any = None,
                    data: DataConfig | None = None) -> dict[str, Any]:
    """What ``cnnkit inspect`` does: compute, print, and optionally save the report as JSON and a
    grid of sample images.  ``data``: a labels table and its columns (``DataConfig.labels``) when
    a table labels the folder."""
    report = inspect_data(source, data_dir, cache_dir, data=data)
    render_inspection(report, console)
    if json_out:
        atomic_write_text(json_out, json.dumps(report, indent=1) + "\n")
    if samples:
        write_sample_grid(source, samples, n, data_dir, cache_dir, data)
        report["samples"] = str(samples)
    return report


def write_sample_grid(source: str, out: str | Path, n: int = 16, data_dir: str | None = None,
                      cache_dir: str | None = None, data: DataConfig | None = None) -> Path:
    """``n`` training images of ``source`` with their labels, saved as a picture at ``out``."""
    from dataclasses import replace

    from cnnkit.visualize.figures import save_figure
    from cnnkit.visualize.samples import plot_samples

    cfg = replace(data or DataConfig(), source=source, data_dir=data_dir, cache_dir=cache_dir, val_split=0.0,
                  test_split=0.0)
    train = load_data(cfg).train
    save_figure(plot_samples(train, n, title=f"{Path(source).name}: {len(train)} training images"), out)
    return Path(out)
