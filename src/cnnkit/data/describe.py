"""What a data source holds, answered cheaply: classes, counts per split, grey or colour, median size.

:func:`describe` never decodes pixels:

* a folder (or a ``.zip`` / ``.tar.gz`` of one, extracted once into the cache by
  :func:`cnnkit.data.sources.folder_of`): the file listing and the headers of a sample of images;
* a named dataset (:data:`cnnkit.data.named.NAMED`) or a packaged set
  (:data:`cnnkit.data.sources.SINGLE_SET`): the description declared with its loader (a
  :class:`~cnnkit.data.types.Source` cannot be made without one);
* arrays given in Python (:class:`~cnnkit.data.types.DataSplits`): the arrays themselves.

A source that lists its files another way (a labels table beside a folder, say) builds a listing
and hands it to :func:`describe_listing`.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable

from cnnkit.config import DataConfig
from cnnkit.data.decode import BadImage, probe
from cnnkit.data.named import NAMED
from cnnkit.data.sources import SINGLE_SET, SOURCES, folder_listing, folder_of
from cnnkit.data.types import PHOTO_MIN_SIDE, DataDescription, DataSplits
from cnnkit.errors import DataError

HEADER_SAMPLE = 200  # image headers read for the size and colour of a folder


def describe(cfg: DataConfig, splits: DataSplits | None = None) -> DataDescription:
    """The description of ``cfg.source`` (or of ``splits``, arrays given in Python, when given).

    Raises :class:`DataError` with one line when the source is neither a known name nor an image
    folder or archive.
    """
    if splits is not None:
        return describe_splits(splits)
    if cfg.source in SINGLE_SET:
        return SINGLE_SET[cfg.source].description
    if cfg.source in NAMED:
        return NAMED[cfg.source].description
    folder = folder_of(cfg.source, cfg.cache_dir)  # a name is answered above: this is a folder
    return describe_listing(folder_listing(cfg), folder)  # labelled by its class folders or by cfg.labels


def describe_splits(splits: DataSplits) -> DataDescription:
    """Arrays in memory: every image has the arrays' one size."""
    train = splits.train
    return DataDescription(tuple(train.classes), len(train), len(splits.val) if splits.val is not None else 0,
                           len(splits.test) if splits.test is not None else 0, train.channels == 1,
                           train.image_size, sizes_vary=False, where="arrays")


def describe_listing(listing: Any, root: Path, where: str = "folder") -> DataDescription:
    """A folder's description from its listing (``classes``; ``files`` with ``path`` and ``split``) and
    the headers of up to :data:`HEADER_SAMPLE` images spread over the classes and splits."""
    files = listing.files
    step = max(1, len(files) // HEADER_SAMPLE)
    infos = list(_headers(f.path for f in files[::step][:HEADER_SAMPLE]))
    if not infos:
        raise DataError(f"{root}: none of the sampled image files could be read")
    hs, ws = [i.height for i in infos], [i.width for i in infos]
    size = (int(statistics.median(hs)), int(statistics.median(ws)))
    count = {split: sum(1 for f in files if f.split == split) for split in ("train", "val", "test")}
    return DataDescription(tuple(listing.classes), count["train"], count["val"], count["test"],
                           all(i.grey for i in infos), size, sizes_vary=len(set(zip(hs, ws))) > 1, where=where)


def _headers(paths: Iterable[Path]) -> Iterable[Any]:
    for path in paths:
        try:
            yield probe(path)
        except BadImage:
            continue  # the loader reports bad files; one unreadable header says nothing about the rest


__all__ = ["HEADER_SAMPLE", "PHOTO_MIN_SIDE", "SOURCES", "DataDescription", "describe", "describe_listing",
           "describe_splits"]
