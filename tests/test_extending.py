"""Extending cnnkit, as ARCHITECTURE.md's "How to add" list says: one file plus a test each.

An augmentation is one Transform and a setting is one field: neither touches cnnkit's modules
(the transform joins a transform list through ``augment_config``, the setting joins a config class
through a subclass), and both then have a flag, validation, ``make_config`` names and a place in
the saved run config.  A logged metric is one line of the declaration (``cnnkit.evaluate.logged``)
that the curves draw; a dataset source is a loader ``DataConfig -> DataSplits`` of its own format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from cnnkit.augment import TRANSFORMS, BatchAugment, Transform, augment_config
from cnnkit.cli import main
from cnnkit.config import DataConfig, RunConfig, TrainConfig, load_run_config, make_config
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import ConfigError, DataError
from cnnkit.evaluate.logged import LOGGED, Logged, curves
from cnnkit.settings import section, setting


class Invert(Transform):
    """Invert each image (x -> 1 - x) with probability ``invert``."""

    settings = {"invert": setting(0.0, "invert images with this probability", metavar="P", range="[0, 1]")}
    columns = ("invert",)  # a 17th column of the batch's one draw
    params = {"invert": 0.0}

    def sample(self, cfg, u, n, size):
        return {"invert": (u["invert"] < cfg.invert) * 1.0}

    def apply(self, x, p, cfg):
        m = p.invert.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)  # (N,1,1,1): 1 = invert
        return m * (1.0 - x) + (1.0 - m) * x


InvertAugment = augment_config((*TRANSFORMS, Invert()))


@dataclass(frozen=True)
class EmaTrain(TrainConfig):
    ema_decay: float = setting(0.0, "decay of an exponential moving average of the weights", range="[0, 1)")


@dataclass(frozen=True)
class MyRun(RunConfig):
    train: EmaTrain = section(EmaTrain, "training")
    augment: InvertAugment = section(InvertAugment, "augmentation")


def test_the_transform_changes_the_batch_and_keeps_the_others_draws():
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 2
    out, _ = BatchAugment(InvertAugment(invert=1.0), 2)(x, y, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, 1.0 - x)
    assert not BatchAugment(InvertAugment(), 2).active
    # it composes with the built-in ones: each image flipped or not, then inverted
    both, _ = BatchAugment(InvertAugment(invert=1.0, horizontal_flip=True), 2)(x, y, torch.Generator().manual_seed(0))
    flipped = [torch.equal(both[i], 1.0 - x[i].flip(-1)) for i in range(6)]
    assert all(f or torch.equal(both[i], 1.0 - x[i]) for i, f in enumerate(flipped)) and any(flipped)
    with pytest.raises(ConfigError, match="augment.invert=2"):
        BatchAugment(InvertAugment(invert=2.0), 2)


def test_from_python_make_config_reaches_both(tmp_path, shapes_splits):
    from cnnkit.train import train

    cfg = make_config(base=MyRun(), model="lenet5", epochs=1, batch_size=16, out=str(tmp_path / "run"),
                      progress=False, report=False, invert=1.0, ema_decay=0.5)
    assert isinstance(cfg, MyRun) and cfg.augment.invert == 1.0 and cfg.train.ema_decay == 0.5
    with pytest.raises(ConfigError, match=r"train.ema_decay=1.5: must be in \[0, 1\)"):
        make_config(base=MyRun(), ema_decay=1.5)
    result = train(cfg, splits=shapes_splits, explicit_out=True)
    saved = load_run_config(result.run_dir / "config.json", MyRun)  # the run's record, read back by its class
    assert saved.train.ema_decay == 0.5 and saved.augment.invert == 1.0


def test_from_the_command_line(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", str(image_folder), "--model", "lenet5", "--epochs", "1", "--batch-size", "8", "--quiet",
              "--no-report", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--out", str(out), "--invert", "0.5", "--ema-decay", "0.25"], config=MyRun) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["augment"]["invert"] == 0.5 and saved["train"]["ema_decay"] == 0.25
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--invert", "nan"], config=MyRun) == 2
    assert capsys.readouterr().err.startswith("cnnkit: error: --invert nan (setting augment.invert): must be in [0, 1]")
    assert main(["augment-preview", str(image_folder), "--invert", "1", "--n-aug", "1", "--n-images", "2",
                 "--out", str(tmp_path / "p.png")], config=MyRun) == 0
    with pytest.raises(SystemExit):  # the plain CLI has no such flag
        main([*common, "--invert", "1"])


# ----------------------------------------------------------------------------- a logged metric

# a throwaway metric declared beside the real ones: its curve follows from this one line
TOP2 = Logged("val_top2_accuracy", "max", ("val_top2_accuracy",), None, "top-2 accuracy", (0.0, 1.0))
WITH_TOP2 = (*LOGGED, TOP2)


def _panels(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


def test_a_declared_metric_gets_its_curve():
    from cnnkit.visualize.curves import plot_curves

    assert curves(WITH_TOP2)[-1].keys == ("val_top2_accuracy",) and curves(WITH_TOP2)[:-1] == curves()
    assert curves(WITH_TOP2)[-1].as_dict() == {"title": "top-2 accuracy",
                                               "series": [["val_top2_accuracy", "validation"]],
                                               "limits": [0.0, 1.0]}
    history = [{"epoch": e, "acc": 0.5, "loss": 1.0, "val_acc": 0.4, "val_loss": 1.2, "val_top2_accuracy": v}
               for e, v in ((1, 0.6), (2, 0.8))]
    fig = plot_curves(history, logged=WITH_TOP2)
    assert _panels(fig) == ["accuracy", "loss", "top-2 accuracy"]  # no balanced accuracy: not in this history
    (ax,) = [ax for ax in fig.axes if ax.get_title() == "top-2 accuracy"]
    assert [line.get_label() for line in ax.lines] == ["validation"] and list(ax.lines[0].get_ydata()) == [0.6, 0.8]
    assert "top-2 accuracy" not in _panels(plot_curves(history))  # undeclared: not drawn


def test_every_declared_metric_is_logged_and_drawn_in_curves_png(tmp_path, shapes_splits):
    from cnnkit.commands.train import train
    from cnnkit.train.callbacks import MONITOR_MODES
    from cnnkit.visualize.curves import plot_curves

    cfg = make_config(model="lenet5", epochs=1, batch_size=16, out=str(tmp_path / "run"), progress=False, report=False)
    result = train(cfg, splits=shapes_splits, explicit_out=True)
    assert {m.key for m in LOGGED} <= set(result.history[0])  # the loop computes what is declared
    assert MONITOR_MODES == {m.key: m.mode for m in LOGGED}  # --monitor knows each one's direction
    assert _panels(plot_curves(result.history)) == [c.title for c in curves()]
    assert (result.run_dir / "curves.png").is_file()


# ----------------------------------------------------------------------------- a dataset source

def load_npz(cfg: DataConfig) -> DataSplits:
    """A source of its own format: an .npz with ``{split}_images`` (N,H,W,C) uint8, ``{split}_labels``
    (N,) and ``classes``."""
    try:
        with np.load(cfg.source) as f:
            classes = tuple(str(c) for c in f["classes"])
            sets = {s: ImageSet(f[f"{s}_images"], f[f"{s}_labels"].astype(np.int64), classes)
                    for s in ("train", "val", "test") if f"{s}_images" in f}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{cfg.source}: not an image .npz ({exc})") from None
    return DataSplits(**sets)


@pytest.fixture
def npz_source(tmp_path, shapes_splits) -> DataConfig:
    """The source's tiny file in its real format, written here, and the data config naming it."""
    path = tmp_path / "shapes.npz"
    arrays = {f"{s}_{k}": getattr(getattr(shapes_splits, s), k) for s in ("train", "val", "test")
              for k in ("images", "labels")}
    np.savez(path, classes=np.array(shapes_splits.classes), **arrays)
    return DataConfig(source=str(path))


def test_a_dataset_source_loads_its_format_and_trains(npz_source, shapes_splits, tmp_path):
    from cnnkit.train import train

    splits = load_npz(npz_source)
    assert splits.classes == shapes_splits.classes and len(splits.test) == len(shapes_splits.test)
    assert np.array_equal(splits.train.images, shapes_splits.train.images)
    cfg = make_config(model="lenet5", epochs=1, batch_size=16, out=str(tmp_path / "run"), progress=False, report=False)
    result = train(replace(cfg, data=npz_source), splits=splits, explicit_out=True)
    assert result.metrics["n"] == len(shapes_splits.test)
    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="broken.npz: not an image .npz"):
        load_npz(DataConfig(source=str(tmp_path / "broken.npz")))


def test_a_dataset_source_describes_itself_for_the_automatic_default(npz_source, shapes_splits):
    """A registry entry is a Source: its loader and its description together; the automatic default
    plans from the description without loading a pixel."""
    from cnnkit.data.describe import describe
    from cnnkit.data.named import NAMED
    from cnnkit.data.types import DataDescription, Source

    h, w = shapes_splits.train.image_size
    entry = Source(load_npz, DataDescription(classes=tuple(shapes_splits.classes), train=len(shapes_splits.train),
                                             val=0, test=len(shapes_splits.test), grey=False, size=(h, w),
                                             sizes_vary=False, where="dataset"))
    NAMED["shapes-npz"] = entry  # a name of one's own within a process: the registry is a plain dict
    try:
        described = describe(DataConfig(source="shapes-npz"))
        assert described is entry.description and "colour" in described.text()
        assert len(entry.load(npz_source).train) == described.train
    finally:
        del NAMED["shapes-npz"]
