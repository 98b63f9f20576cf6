"""Data: every source (a named dataset or a folder of images) becomes uint8 NHWC arrays.

``load_data(cfg)`` is the one entry point: it returns :class:`DataSplits` with train and,
where available or split off, validation and test sets at the configured size and channels.
"""

from __future__ import annotations

from cnnkit.data.types import DataSplits, ImageSet

__all__ = ["DataSplits", "ImageSet", "load_data"]


def load_data(cfg):  # cfg: cnnkit.config.DataConfig
    from cnnkit.data.sources import load_data as _load

    return _load(cfg)
