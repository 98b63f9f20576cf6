"""Configuration as data: frozen dataclasses, saved as JSON next to every checkpoint.

A run is fully described by a :class:`RunConfig`; a checkpoint additionally carries a
:class:`Preprocess` (classes, image size, channels, normalisation) so that it alone is
enough to predict.

Every setting is declared once, as a field made by :func:`cnnkit.settings.setting` (help,
flag, choices, range); the command-line flags, validation (:func:`validate`), config-file
loading (:func:`load_run_config`) and overrides (:func:`override`, :func:`make_config`) are all
derived from those declarations.  Adding a setting is one field here (and its use).  The
augmentation settings are declared by the transforms in :mod:`cnnkit.augment.transforms`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from cnnkit.augment.transforms import AugmentConfig
from cnnkit.errors import ConfigError
from cnnkit.settings import SettingError, SharedFlag, check, override, section, setting

# choice lists, owned here (torch-free) and used by the modules that implement them
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("none", "cosine", "onecycle", "step")
TRANSFER_MODES = ("none", "features", "head", "finetune")
AMP_MODES = ("auto", "off", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")
CLASS_WEIGHTS = ("auto", "none", "balanced")
LABEL_ISSUES = ("auto", "off")
BINARY_OUTPUTS = ("sigmoid", "softmax")  # a two-class model: one sigmoid logit or two softmax logits

SEED_RANGE = "[0, 4294967295]"  # numpy's legacy seeding takes 32 bits
SIZE_RANGE = "[8, 1024]"  # 1024x1024 RGB is 3 MiB per image in the uint8 cache, and 12 MiB as float per batch item


def image_pair(value: Any) -> Any:
    """An image size as written -> (H, W): ``64`` or ``[64]`` is square, ``[H, W]`` stays."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return (value[0], value[0])
        if len(value) != 2:
            raise ValueError("takes one number (square) or two (height width)")
        return tuple(value)
    return value  # anything else: the check names it


def hidden_sizes(value: Any) -> Any:
    """Dense head sizes as written -> a tuple without zeros (``--head 0`` = no hidden layer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    return tuple(h for h in value if h != 0) if isinstance(value, (list, tuple)) else value


def key_set(value: Any) -> Any:
    """Dotted keys as written -> a sorted tuple without repeats (anything else: the check names it)."""
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(k, str) for k in value):
        return tuple(sorted(set(value)))
    return value


# which models are backbones is the model registry's knowledge: the CLI supplies the condition
_BACKBONE_ONLY = dict(only_if="backbone", only_if_text="pretrained backbones only (see `cnnkit models`)")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are shaped.

    ``source`` is a dataset name (``mnist``, ``fashion-mnist``, ``cifar10``, ``cats-vs-dogs``,
    ``horses-vs-humans``, ``mnist-mini``, ``digits``) or a folder path.
    """

    source: str = setting("mnist-mini", "dataset name or image folder", cli=False)  # the commands' positional
    image_size: tuple[int, int] | None = setting(None, "target size: N (square) or H W", metavar="N",
                                                 range=SIZE_RANGE, coerce=image_pair)  # (H, W); None = the data's own
    channels: int | None = setting(None, "1 = greyscale, 3 = RGB (default: the data's own)", choices=(1, 3))
    val_split: float = setting(0.1, "validation fraction when the data has no validation split", range="[0, 1)")
    test_split: float = setting(0.0, "test fraction split off when the data has no test split", range="[0, 1)")
    data_dir: str | None = setting(None, "folder holding (or receiving) named datasets")
    cache_dir: str | None = setting(None, "decode-once image cache (default ~/.cache/cnnkit)")
    strict: bool = setting(False, "stop at the first unreadable image")
    label_map: str | None = setting(None, "CSV of label corrections (file,label; label = a class or exclude) applied "
                                    "after the split; default: label_map.csv in the data folder when present, none = "
                                    "ignore it", metavar="FILE")
    seed: int = setting(0, "seed of the train/validation/test split", cli=False, range=SEED_RANGE)  # --seed
    # labels from a table (Kaggle's train.csv beside a flat folder): see cnnkit.data.table
    labels: str | None = setting(None, "CSV table of labels for the image folder: one row per image (its file name "
                                 "relative to the folder, with or without extension, and its class); a pandas "
                                 "DataFrame in Python", metavar="CSV")
    file_column: str | None = setting(None, "--labels: column of the image file names (default: the first)",
                                      metavar="NAME", only_if=lambda cfg: cfg.data.labels is not None,
                                      only_if_text="--labels only")
    label_column: str | None = setting(None, "--labels: column of the classes (default: the second)", metavar="NAME",
                                       only_if=lambda cfg: cfg.data.labels is not None, only_if_text="--labels only")
    split_column: str | None = setting(None, "--labels: column of each image's split (train, validation or test; "
                                       "default: a column named split if any, else --val-split/--test-split split "
                                       "the rows)", metavar="NAME", only_if=lambda cfg: cfg.data.labels is not None,
                                       only_if_text="--labels only")

    def extra_checks(self, prefix: str = "") -> None:
        """The column settings name columns of the ``labels`` table: without one they would do nothing."""
        if self.labels is None:
            for name in ("file_column", "label_column", "split_column"):
                if getattr(self, name) is not None:
                    raise SettingError(f"{prefix}{name}", getattr(self, name), "goes with a labels table (labels)")


@dataclass(frozen=True)
class ModelConfig:
    name: str = setting("auto", "model name (see `cnnkit models`; default auto: chosen from the data and "
                        "the time budget)", flag="--model")
    num_classes: int = setting(10, "outputs (set from the data)", cli=False, range="[1, inf)")
    in_channels: int = setting(3, "input channels (set from the data)", cli=False, range="[1, inf)")
    image_size: tuple[int, int] = setting((32, 32), "input size (set from the data)", cli=False, range="[1, inf)",
                                          coerce=image_pair)
    dropout: float | None = setting(None, "override the model's dropout rate", range="[0, 1)")  # None = its own
    pretrained: bool = setting(False, "load the backbone's ImageNet weights (default: on with --transfer)",
                               negatable=True, **_BACKBONE_ONLY)
    weights: str | None = setting(None, "backbone weights from a local state_dict file (.pth/.pt/.safetensors of "
                                  "the torchvision network)", metavar="PATH", **_BACKBONE_ONLY)
    transfer: str = setting("none", "pretrained backbones: features = frozen, head trained on features computed "
                            "once; head = frozen, head trained on (augmented) images; finetune = also the top "
                            "--finetune-blocks blocks at 0.1x the learning rate; none = train every layer",
                            choices=TRANSFER_MODES)
    cut: str | None = setting(None, "backbone layer to cut after (e.g. Mixed_6e or Keras' mixed7, layer3, "
                              "features.7; an unknown name lists them)", metavar="LAYER", **_BACKBONE_ONLY)
    head: tuple[int, ...] = setting((), "hidden sizes of the dense head, e.g. 1024 (0 = none: pooled features "
                                    "straight to the output layer)", metavar="N", range="[0, 65536]",
                                    coerce=hidden_sizes, **_BACKBONE_ONLY)
    head_dropout: float = setting(0.0, "dropout in the head (e.g. 0.2)", range="[0, 1)", **_BACKBONE_ONLY)
    finetune_blocks: int = setting(0, "--transfer finetune: top N backbone blocks to train", metavar="N",
                                   range="[0, 1000]", only_if=lambda cfg: cfg.model.transfer == "finetune",
                                   only_if_text="--transfer finetune only")
    binary_output: str = setting("sigmoid", "two classes: sigmoid = one logit with binary cross-entropy (Keras' "
                                 "Dense(1, sigmoid)); softmax = two logits with categorical cross-entropy (Dense(2, "
                                 "softmax)); a model may fix its own", choices=BINARY_OUTPUTS)


@dataclass(frozen=True)
class OptimConfig:
    name: str = setting("adam", "optimizer", flag="--optimizer", choices=OPTIMIZERS)
    # a number, or "auto" until train() resolves it with the range test (config.json records the number)
    lr: float = setting(3e-3, "learning rate (the peak of the default one-cycle schedule); auto = the suggestion "
                        "of a short learning-rate range test (see `cnnkit lr-find`)", range="[0, 10]", words=("auto",))
    momentum: float = setting(0.9, "SGD momentum", range="[0, 1)")
    nesterov: bool = setting(False, "SGD with Nesterov momentum")
    weight_decay: float = setting(0.0, "L2 weight decay", range="[0, 1]")
    decay: float = setting(0.0, "Keras-style time decay: lr / (1 + decay * step)", range="[0, 1]")
    schedule: str = setting("onecycle", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear warm-up epochs", flag="--warmup", range="[0, 10000]")
    step_size: int = setting(10, "--schedule step: epochs between rate cuts (default 10)", range="[1, inf)")
    gamma: float = setting(0.1, "--schedule step: factor of each cut (default 0.1)", range="[0, 1]")
    label_smoothing: float = setting(0.0, "label smoothing of the targets", range="[0, 1)")
    class_weight: str = setting("auto", "weight the training loss by class: balanced = n / (K * n_k); auto = balanced "
                                "when the largest class has over 1.5x the images of the smallest",
                                choices=CLASS_WEIGHTS)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(15, "epochs to train", range="[1, inf)")
    batch_size: int = setting(64, "batch size (the global one when several processes train)", range="[1, inf)")
    seed: int = setting(0, "seed of weights, shuffling, augmentation and dropout", cli=False, range=SEED_RANGE)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N | mps")
    fast: bool = setting(True, "turn off channels_last, autocast and allocator tuning")  # --no-fast
    amp: str = setting("auto", "mixed precision (default auto)", choices=AMP_MODES)
    compile: str = setting("auto", "torch.compile (default: on CUDA only)", choices=COMPILE_MODES)
    monitor: str = setting("val_acc,val_loss", "metric for early stopping and the best checkpoint; a,b = by a, "
                           "ties broken by b (default val_acc,val_loss: accuracy, ties to the lower loss)")
    time: float | None = setting(None, "wall-clock budget of the whole run in seconds: stops at an epoch's end "
                                 "when the next would not fit, unless all the remaining epochs take less than "
                                 "min(10 s, 5 percent of it) (auto plans within it)", range="(0, inf)",
                                 metavar="SECONDS")
    patience: int | None = setting(None, "early stopping patience in epochs (default: off)", range="[0, inf)")
    min_delta: float = setting(0.0, "smallest change of the monitored metric that counts as better",
                               range="[0, inf)")
    eval_batch_size: int = setting(256, "batch size of evaluation", cli=False, range="[1, inf)")
    progress: bool = setting(True, "no progress output", flag="--quiet")
    label_issues: str = setting("auto", "label_issues.csv: the images whose label out-of-sample predictions doubt "
                                "(off = skip it)", choices=LABEL_ISSUES)
    label_folds: int = setting(5, "--transfer features: folds of the cross-validated head that scores label issues",
                               metavar="K", range="[2, 50]", only_if=lambda cfg: cfg.model.transfer == "features",
                               only_if_text="--transfer features only")
    report: bool = setting(True, "skip report.html")  # --no-report: curves, metrics, most-wrong, Grad-CAM
    tensorboard: bool = setting(True, "TensorBoard event files of the epoch metrics in RUN/tensorboard/ "
                                "(logs, outside the run's commit; default on)", negatable=True)
    out: str = setting("runs/run", "run folder (default runs/<data>-<model>, numbered if taken)")


@dataclass(frozen=True)
class RunConfig:
    shared_flags: ClassVar[tuple[SharedFlag, ...]] = (
        SharedFlag("--seed", ("data.seed", "train.seed"), "random seed of the split and of training"),)
    # keys older versions wrote that are gone -> what became of them; a config file holding one gets a
    # note instead of an error (any section may declare its own).  None so far: every setting that
    # config.py and the transforms ever declared is still one.
    gone_settings: ClassVar[Mapping[str, str]] = {}

    data: DataConfig = section(DataConfig, "data")
    model: ModelConfig = section(ModelConfig, "model")
    optim: OptimConfig = section(OptimConfig, "optimisation")
    train: TrainConfig = section(TrainConfig, "training")
    augment: AugmentConfig = section(AugmentConfig, "augmentation (Keras ImageDataGenerator names; applied per "
                                                    "batch on the device)")
    # what the person named, whatever the value (a flag equal to its default too): a plan keeps these
    given: tuple[str, ...] = setting((), "the settings the user named, as sorted dotted keys (flags, make_config "
                                     "keywords, --config keys)", cli=False, coerce=key_set)


@dataclass(frozen=True)
class Preprocess:
    """Everything a checkpoint needs to turn a file into a model input."""

    classes: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W)
    channels: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    model: str = ""


# ---------------------------------------------------------------- validation and overrides


def validate(cfg: Any) -> None:
    """Check every setting of ``cfg`` (a RunConfig or one section): type, finite, range, choices.

    Raises a :class:`~cnnkit.settings.SettingError` (a ConfigError) naming the setting, e.g.
    ``optim.lr=inf: must be in [0, 10]``; the CLI names the flag instead.
    """
    prefix = "" if isinstance(cfg, RunConfig) else next(
        (f.name + "." for f in fields(RunConfig) if isinstance(cfg, f.default_factory)), "")
    check(cfg, prefix)


def replace(obj: Any, **changes: Any) -> Any:
    """:func:`override` by field name, skipping ``None`` values (handy for optional overrides)."""
    return override(obj, {k: v for k, v in changes.items() if v is not None})


# ---------------------------------------------------------------- (de)serialisation


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def _coerce(tp: Any, value: Any) -> Any:
    """JSON gives lists where the dataclass wants tuples; convert back."""
    text = str(tp)
    if value is None:
        return None
    if isinstance(value, list) and "tuple" in text:
        return tuple(value)
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from a (possibly nested) dict, ignoring unknown keys (not validated)."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            value = from_dict(sub, value)
        else:
            value = _coerce(f.type, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def save_json(obj: Any, path: str | Path) -> None:
    from cnnkit.io import atomic_write_text

    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_run_config(path: str | Path, cls: type = RunConfig, *, named: bool = True) -> Any:
    """A checked run config from a JSON file (any run's ``config.json``).

    A file that cannot be read, an unknown key or a value that cannot be used is a ConfigError
    naming the file and the key path; a key an older cnnkit wrote that is gone
    (``gone_settings`` of a section) gets a one-line note and is ignored.
    ``named``: every setting the file holds counts as given by the user (added to ``given``, with
    the file's own ``given``), as a ``--config`` file's settings do; False reads a run's record back
    as it was saved.
    """
    from cnnkit.settings import load

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read a run config ({exc})") from None
    except RecursionError:  # thousands of nested [ or {
        raise ConfigError(f"{path}: cannot read a run config (nested too deeply)") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a run config is a JSON object of sections, not {type(data).__name__}")
    def note(key: str, why: str) -> None:
        print(f"cnnkit: note: {path}: {key} is a setting of an older cnnkit ({why}); ignored", file=sys.stderr)

    try:
        cfg = load(cls, data, on_gone=note)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return _named_in_file(cfg, data) if named else cfg


def _named_in_file(cfg: Any, data: Mapping[str, Any]) -> Any:
    from cnnkit.settings import walk

    known = {s.key for s in walk(type(cfg))} - {"given"}
    return with_given(cfg, [k for k in dotted_keys(data) if k in known])


def dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping's leaves: {"train": {"epochs": 1}} -> ["train.epochs"]."""
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out += dotted_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


# ---------------------------------------------------------------- settings named by the user


def with_given(cfg: Any, keys: Iterable[str]) -> Any:
    """``cfg`` with the dotted ``keys`` added to ``cfg.given``, the settings the user named."""
    return dataclasses.replace(cfg, given=key_set((*cfg.given, *keys)))


def named_defaults(cfg: Any) -> Any:
    """``cfg`` with the defaults that follow from the settings the user named, where the user did not
    name them: a transfer mode means the backbone's pretrained weights, unless ``model.pretrained`` is
    named or ``model.weights`` gives other ones."""
    if "model.pretrained" not in cfg.given and cfg.model.transfer != "none" and not cfg.model.weights:
        cfg = override(cfg, {"model.pretrained": True})
    return cfg


def configure(base: Any, changes: Mapping[str, Any]) -> Any:
    """``base`` with the settings a person named (``changes``, by dotted key), in one step, checked.

    The keys join ``given``; an augmentation preset is written out where a named value clears one
    of its fields (``--augment standard --no-hflip``); then :func:`named_defaults`.  Used by the
    command line (flags) and :func:`make_config` (keywords) alike.
    """
    from cnnkit.augment.presets import write_out_cleared

    cfg = with_given(override(base, changes), [k for k in changes if k != "given"])
    augment = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("augment.")}
    cfg = dataclasses.replace(cfg, augment=write_out_cleared(cfg.augment, augment))
    cfg = named_defaults(cfg)
    validate(cfg)
    return cfg


# flat names that differ from the field name, or that would be ambiguous
_ALIASES = {"data": "data.source", "model": "model.name", "optimizer": "optim.name", "augment": "augment.preset"}


def frame_file(frame: Any, cache_dir: str | None = None) -> Path:
    """A labels table given as a pandas DataFrame -> a CSV file named by its content, under the cache.

    A config is data saved beside every checkpoint, so it names a file rather than holding the
    frame.  A named index (``df.set_index("id")``) is kept as the first column.
    """
    import hashlib

    from cnnkit.io import atomic_write_text, cache_root

    index = frame.index.name is not None
    text = frame.to_csv(index=index)
    path = cache_root(cache_dir) / "labels" / f"table-{hashlib.sha256(text.encode()).hexdigest()[:16]}.csv"
    if not path.is_file():
        atomic_write_text(path, text)
    return path


def make_config(base: Any = None, **flat: Any) -> Any:
    """A checked RunConfig from flat keyword names, for the Python API::

        make_config(data="mnist-mini", model="lenet5", epochs=5, optimizer="sgd", lr=0.01, augment="light")

    Each name is a field of one section (``epochs`` -> train, ...); a name in several sections
    sets each (``seed``: the data split seed and the training seed; ``image_size``: the data's
    and the model's).  ``base`` (default ``RunConfig()``, or a subclass instance) is the start.
    Every name given joins ``given`` (as its dotted keys), whatever its value; see :func:`configure`.
    ``labels`` takes a CSV file or a pandas DataFrame (saved once as a CSV under the cache).
    """
    from cnnkit.settings import walk

    base = base if base is not None else RunConfig()
    keys = [s.key for s in walk(type(base))]
    changes: dict[str, Any] = {}
    for name, value in flat.items():
        owners = [_ALIASES[name]] if name in _ALIASES else [k for k in keys if k.split(".", 1)[-1] == name]
        if not owners:
            raise ConfigError(f"unknown setting {name!r}")
        changes.update({k: value for k in owners})
    if hasattr(changes.get("data.labels"), "to_csv"):  # a pandas DataFrame: the config holds a file, as saved runs do
        changes["data.labels"] = str(frame_file(changes["data.labels"], changes.get("data.cache_dir",
                                                                                     base.data.cache_dir)))
    return configure(base, changes)


__all__ = ["AMP_MODES", "COMPILE_MODES", "OPTIMIZERS", "SCHEDULES", "TRANSFER_MODES", "AugmentConfig", "DataConfig",
           "ModelConfig", "OptimConfig", "Preprocess", "RunConfig", "SettingError", "TrainConfig", "configure",
           "dotted_keys", "from_dict", "hidden_sizes", "image_pair", "key_set", "load_run_config", "make_config",
           "named_defaults",
           "override", "replace", "save_json", "to_dict", "validate", "with_given"]
