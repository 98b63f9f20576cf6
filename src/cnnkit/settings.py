"""Settings declared once: a dataclass field carries its help, flag, choices and range.

::

    @dataclass(frozen=True)
    class OptimConfig:
        lr: float = setting(3e-3, "learning rate", range="[0, 10]")

Everything else is derived from that metadata, here and nowhere else:

* :func:`add_flags` / :func:`given`  - the argparse groups of a command, and which settings
  its command line set (as dotted keys, ``{"optim.lr": 0.01}``);
* :func:`override`  - the one way to change settings by dotted key;
* :func:`check`     - validation: type, finite, range, choices; a :class:`SettingError` that
  names the setting (or, through :meth:`SettingError.named`, the flag);
* :func:`load`      - a config from a JSON mapping (unknown keys ignored, values checked).

A config is a tree of frozen dataclasses: a field whose default factory is a dataclass is a
*section* (``RunConfig.train``), every other field is a setting.  A class may declare
``shared_flags`` (one flag setting several settings, such as ``--seed``) and an
``extra_checks(prefix)`` method for rules that a range cannot say.  This module knows none of
cnnkit's own settings; :mod:`cnnkit.config` declares them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from cnnkit.errors import ConfigError

_META = "cnnkit.setting"
_SECTION = "cnnkit.section"


class SettingError(ConfigError):
    """A setting's value cannot be used; ``key`` is its dotted name (``optim.lr``)."""

    def __init__(self, key: str, value: Any, problem: str) -> None:
        super().__init__(f"{key}={_show(value)}: {problem}")
        self.key, self.value, self.problem = key, value, problem

    def named(self, flags: Mapping[str, str]) -> ConfigError:
        """The same error naming the command-line flag that set the value (where one did)."""
        if self.key not in flags:
            return self
        shown = " ".join(map(_show, self.value)) if isinstance(self.value, tuple) else _show(self.value)
        return ConfigError(f"{flags[self.key]} {shown} (setting {self.key}): {self.problem}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# ----------------------------------------------------------------------------- declaring


@dataclass(frozen=True)
class Interval:
    """An interval written as text: ``"[0, 1)"``, ``"(0, 10]"``, ``"[1, inf)"``.

    NaN is never inside; infinity only where the text closes the interval at ``inf``.
    """

    text: str
    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> "Interval":
        t = text.strip()
        if len(t) < 5 or t[0] not in "[(" or t[-1] not in "])" or t.count(",") != 1:
            raise ValueError(f"not an interval: {text!r} (write e.g. '[0, 1)')")
        low, high = (_number(s) for s in t[1:-1].split(","))
        return cls(t, low, high, t[0] == "(", t[-1] == ")")

    def __contains__(self, v: float) -> bool:
        if math.isnan(v):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below


def _number(text: str) -> float:
    s = text.strip()
    if s in ("inf", "+inf", "-inf"):
        return -math.inf if s.startswith("-") else math.inf
    try:
        return int(s)  # exact for large integer bounds such as 4294967295
    except ValueError:
        return float(s)


@dataclass(frozen=True)
class Spec:
    """What :func:`setting` records in a field's metadata."""

    help: str
    flags: tuple[str, ...] | None = None  # None: derived from the field name; (): no flag
    choices: tuple[Any, ...] | None = None
    range: Interval | None = None
    metavar: str | None = None
    negatable: bool = False  # bool: both --x and --no-x
    coerce: Callable[[Any], Any] | None = None  # value as written -> field value (CLI, Python, files)
    # run config -> whether this setting has an effect; or the name of a condition that a higher
    # layer supplies to ``ineffective`` (e.g. "backbone": only the model registry knows which are)
    only_if: Callable[[Any], bool] | str | None = None
    only_if_text: str = ""  # when it has one, in words ("pretrained backbones")
    words: tuple[str, ...] = ()  # a number setting's other accepted values: ("auto",) = resolved where it acts


def setting(default: Any, help: str, *, flag: str | tuple[str, ...] | None = None, choices: Iterable[Any] | None = None,
            range: str | None = None, metavar: str | None = None, cli: bool = True, negatable: bool = False,
            coerce: Callable[[Any], Any] | None = None, only_if: Callable[[Any], bool] | str | None = None,
            only_if_text: str = "", words: Iterable[str] = ()) -> Any:
    """A dataclass field declaring one setting (use as ``name: type = setting(...)``).

    flag:     option string(s); default ``--field-name`` (a bool defaulting to True: ``--no-field-name``).
              A bool flag sets True, or False when the default is True; ``negatable`` gives ``--x/--no-x``.
              Tuples take ``nargs="+"``.
    cli:      False for settings with no flag (derived or Python/config-file only).
    choices:  the allowed values; range: an :class:`Interval` text checked for numbers (each item of a tuple).
    coerce:   turns a value as written into the field's value (``64`` -> ``(64, 64)``); ValueError = invalid.
    only_if:  ``run_config -> bool``: False where the setting has no effect (the CLI says so).
    words:    for a number setting, words it takes besides numbers (``("auto",)``: ``--lr auto``); the
              code that reads the setting resolves the word to a number.
    """
    flags = () if not cli else (flag,) if isinstance(flag, str) else flag
    spec = Spec(help=help, flags=flags, choices=tuple(choices) if choices is not None else None,
                range=Interval.parse(range) if range is not None else None, metavar=metavar, negatable=negatable,
                coerce=coerce, only_if=only_if, only_if_text=only_if_text, words=tuple(words))
    return dataclasses.field(default=default, metadata={_META: spec})


def section(cls: type, title: str) -> Any:
    """A nested section field (``data: DataConfig = section(DataConfig, "data")``); title = its flag group."""
    return dataclasses.field(default_factory=cls, metadata={_SECTION: title})


@dataclass(frozen=True)
class SharedFlag:
    """One flag that sets several settings (``--seed``: data.seed and train.seed).

    ``keys`` are relative to the class declaring it in ``shared_flags``; a setting's own flag given on
    the same command line wins (``--shift 0.2 --height-shift 0.05``).
    """

    flag: str
    keys: tuple[str, ...]
    help: str
    metavar: str | None = None


# ----------------------------------------------------------------------------- walking a config class


@dataclass(frozen=True)
class Setting:
    """One setting of a config class, as the walk finds it."""

    key: str  # dotted: "optim.lr"
    spec: Spec
    kind: type  # bool | int | float | str | tuple
    item: type | None  # element type of a tuple
    length: int | None  # fixed tuple length, else None
    optional: bool  # None allowed
    default: Any
    flags: tuple[str, ...]


def _kind(hint: Any) -> tuple[type, type | None, int | None, bool]:
    """(kind, item, length, optional) from a type hint such as ``tuple[int, int] | None``."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        length = None if len(items) == 2 and items[1] is Ellipsis else len(items)
        return tuple, items[0], length, optional
    return hint, None, None, optional


def _is_section(f: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False


@functools.lru_cache(maxsize=None)
def walk(cls: type, prefix: str = "") -> tuple[Setting, ...]:
    """Every setting of config class ``cls`` and its sections, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        if _is_section(f):
            out += walk(f.default_factory, f"{prefix}{f.name}.")
            continue
        spec = f.metadata.get(_META) or Spec(help="", flags=())  # a plain field: type-checked, no flag
        kind, item, length, optional = _kind(hints[f.name])
        flags = spec.flags
        if flags is None:
            name = f.name.replace("_", "-")
            flags = (f"--no-{name}",) if kind is bool and f.default is True and not spec.negatable else (f"--{name}",)
        out.append(Setting(prefix + f.name, spec, kind, item, length, optional, f.default, tuple(flags)))
    return tuple(out)


def sections(cls: type, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted prefix, class, title) of ``cls`` itself and every nested section, depth first."""
    out = [(prefix, cls, "")]
    for f in dataclasses.fields(cls):
        if _is_section(f):
            sub = sections(f.default_factory, f"{prefix}{f.name}.")
            out += [(sub[0][0], sub[0][1], f.metadata.get(_SECTION, f.name)), *sub[1:]]
    return out


def shared_flags(cls: type) -> list[SharedFlag]:
    """Every shared flag of ``cls`` and its sections, keys made absolute."""
    return [dataclasses.replace(s, keys=tuple(prefix + k for k in s.keys))
            for prefix, sub, _ in sections(cls) for s in getattr(sub, "shared_flags", ())]


def _get(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- checking


_WANT = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
_WANT_MANY = {bool: "true/false values", int: "whole numbers", float: "numbers", str: "texts"}


def _item_ok(kind: type, v: Any) -> bool:
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


def check_value(s: Setting, value: Any) -> None:
    """Raise SettingError unless ``value`` fits setting ``s`` (type, finite, range, choices)."""
    if value is None:
        if s.optional:
            return
        raise SettingError(s.key, value, "must be set")
    value = coerce(s, value)
    if s.spec.words and value in s.spec.words:
        return
    items = value if s.kind is tuple else (value,)
    kind = s.item if s.kind is tuple else s.kind
    if s.kind is tuple and (not isinstance(value, tuple) or (s.length is not None and len(value) != s.length)):
        raise SettingError(s.key, value, f"must be {s.length or 'a list of'} {_WANT_MANY.get(kind, 'values')}")
    words = "".join(f" or {w}" for w in s.spec.words)
    for v in items:
        if not _item_ok(kind, v):
            raise SettingError(s.key, value, f"must be {_WANT.get(kind, kind.__name__)}"
                               + (f" in {s.spec.range.text}" if words and s.spec.range else "") + words)
        if kind in (int, float):
            if s.spec.range is not None and v not in s.spec.range:
                raise SettingError(s.key, v, f"must be in {s.spec.range.text}{words}")
            if s.spec.range is None and not math.isfinite(v):
                raise SettingError(s.key, v, "must be a finite number")
    if s.spec.choices is not None and value not in s.spec.choices:
        raise SettingError(s.key, value, f"must be one of {', '.join(map(str, s.spec.choices))}")


def check(obj: Any, prefix: str = "") -> None:
    """Validate every setting of config ``obj`` (and its sections), then their ``extra_checks``.

    ``prefix`` names ``obj`` in errors when it is itself a section (``"augment."``).
    """
    for s in walk(type(obj), prefix):
        check_value(s, _get(obj, s.key[len(prefix):]))
    for sub_prefix, _, _ in sections(type(obj)):
        sub = _get(obj, sub_prefix[:-1]) if sub_prefix else obj
        extra = getattr(sub, "extra_checks", None)
        if extra is not None:
            extra(prefix + sub_prefix)


def check_number(name: str, value: float, interval: str) -> None:
    """One number outside the settings (e.g. ``serve --max-upload-mb``): ConfigError unless in ``interval``."""
    if not isinstance(value, (int, float)) or value not in Interval.parse(interval):
        raise ConfigError(f"{name} {_show(value)}: must be in {interval}")


def ineffective(cfg: Any, keys: Iterable[str],
                conditions: Mapping[str, Callable[[Any], bool]] | None = None) -> list[tuple[str, str]]:
    """(key, what it applies to) for each of ``keys`` whose setting has no effect in ``cfg``.

    A setting whose ``only_if`` is a name is judged by ``conditions[name]`` (skipped when absent).
    """
    by_key = {s.key: s for s in walk(type(cfg))}

    def applies(key: str) -> bool:
        test = by_key[key].spec.only_if
        if isinstance(test, str):
            test = (conditions or {}).get(test)
        return test is None or test(cfg)

    return [(k, by_key[k].spec.only_if_text) for k in keys if k in by_key and not applies(k)]


# ----------------------------------------------------------------------------- overriding and loading


def coerce(s: Setting, value: Any) -> Any:
    """A value as written (a JSON list, ``64`` for a size) -> the field's value; SettingError if impossible."""
    if s.kind is tuple and isinstance(value, list):
        value = tuple(value)
    if s.spec.coerce is not None and value is not None:
        try:
            value = s.spec.coerce(value)
        except (TypeError, ValueError) as exc:
            raise SettingError(s.key, value, str(exc)) from None
    return value


def _section_keys(cls: type) -> set[str]:
    """Dotted names of the sections of ``cls`` (``data``, ``augment``, ...)."""
    return {prefix[:-1] for prefix, _, _ in sections(cls) if prefix}


def gone_settings(cls: type) -> dict[str, str]:
    """Keys that older versions wrote and that are gone (dotted key -> what became of it), from each
    section's ``gone_settings`` class attribute: a config file holding one gets a note, not an error."""
    return {prefix + k: why for prefix, sub, _ in sections(cls) for k, why in getattr(sub, "gone_settings", {}).items()}


def _flatten(cls: type, changes: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 1}} and {"train.epochs": 1} -> {"train.epochs": 1}.

    A section must be given a mapping (``"train": null`` is a ConfigError naming ``train``); a
    setting keeps what it is given, a mapping too, for :func:`check` to name its key; a mapping
    under an unknown name is flattened, so the unknown key is named in full (``data.sorce``).
    """
    heads, keys = _section_keys(cls), {s.key for s in walk(cls)}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        full = f"{prefix}{key}"
        if full in heads:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{full}: must be an object of {full}.* settings, not {_json_kind(value)}")
            flat.update(_flatten(cls, value, full + "."))
        elif full not in keys and isinstance(value, Mapping) and value:
            flat.update(_flatten(cls, value, full + "."))
        else:
            flat[full] = value
    return flat


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", tuple: "a list", str: "text", bool: "true/false", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _unknown(cls: type, key: str) -> ConfigError:
    heads = {prefix[:-1]: sub for prefix, sub, _ in sections(cls) if prefix}
    head, _, name = key.rpartition(".")
    if head in heads:
        return ConfigError(f"unknown setting {key!r}: {heads[head].__name__} has no field {name!r}")
    if heads:
        return ConfigError(f"unknown setting {key!r}: write section.field, section one of "
                           f"{', '.join(h for h in heads if '.' not in h)}")
    return ConfigError(f"unknown setting {key!r}: {cls.__name__} has no field {key!r}")


def override(obj: Any, changes: Mapping[str, Any], *, ignore_unknown: bool = False,
             on_gone: Callable[[str, str], None] | None = None) -> Any:
    """``obj`` with settings replaced by dotted key: ``override(cfg, {"train.epochs": 5})``.

    Nested mappings (``{"train": {"epochs": 5}}``) work too; values are coerced (lists to tuples,
    a setting's own ``coerce``) but not validated - :func:`check` does that.  An unknown key is a
    ConfigError naming its full path unless ``ignore_unknown``.  With ``on_gone``, a key that
    older versions wrote and that is gone (:func:`gone_settings`) is passed to it and skipped.
    """
    by_key = {s.key: s for s in walk(type(obj))}
    gone = gone_settings(type(obj)) if on_gone is not None else {}
    tree: dict[str, Any] = {}
    for key, value in _flatten(type(obj), changes).items():
        s = by_key.get(key)
        if s is None:
            if key in gone:
                on_gone(key, gone[key])
                continue
            if ignore_unknown:
                continue
            raise _unknown(type(obj), key)
        tree[key] = coerce(s, value)
    return _replace(obj, tree)


def _replace(obj: Any, changes: Mapping[str, Any]) -> Any:
    own = {k: v for k, v in changes.items() if "." not in k}
    for name in {k.split(".", 1)[0] for k in changes if "." in k}:
        sub = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith(name + ".")}
        own[name] = _replace(getattr(obj, name), sub)
    return dataclasses.replace(obj, **own) if own else obj


def load(cls: type, data: Mapping[str, Any], *, strict: bool = True,
         on_gone: Callable[[str, str], None] | None = None) -> Any:
    """A checked ``cls`` from a (JSON) mapping.

    ``strict`` (a config file): an unknown key or a value of the wrong type is a ConfigError naming
    its key path; a key older versions wrote and that is gone goes to ``on_gone(key, why)``.  Not
    ``strict`` (a checkpoint's own config, perhaps from a RunConfig subclass): unknown keys are
    skipped, the values of known ones are still checked.
    """
    cfg = override(cls(), data, ignore_unknown=not strict, on_gone=on_gone or (lambda key, why: None))
    check(cfg)
    return cfg


# ----------------------------------------------------------------------------- the command line


def _shared_dest(flag: str) -> str:
    return "shared" + flag  # not a dotted key: never mistaken for a setting


def _arguments(cls: type, include: Callable[[str], bool]) -> list[tuple[str, object]]:
    """(section title, Setting or SharedFlag) in the order the flags are added and listed.

    A shared flag comes just before the first setting it sets, when every setting it sets is included.
    """
    shared = [sf for sf in shared_flags(cls) if all(include(k) for k in sf.keys)]
    out: list[tuple[str, object]] = []
    titles = {prefix: title for prefix, _, title in sections(cls)}
    for s in walk(cls):
        title = titles[s.key.rpartition(".")[0] + "." if "." in s.key else ""]
        for sf in [sf for sf in shared if s.key in sf.keys]:
            out.append((title, sf))
            shared.remove(sf)
        if s.flags and include(s.key):
            out.append((title, s))
    return out


def _include(keys: Iterable[str] | None, skip: Iterable[str]) -> Callable[[str], bool]:
    wanted, skipped = (set(keys) if keys is not None else None), set(skip)

    def include(key: str) -> bool:
        if key in skipped or any(key.startswith(p) for p in skipped if p.endswith(".")):
            return False
        return wanted is None or key in wanted or any(key.startswith(p) for p in wanted if p.endswith("."))
    return include


def add_flags(parser: argparse.ArgumentParser, cls: type, keys: Iterable[str] | None = None,
              skip: Iterable[str] = ()) -> None:
    """Add the flags of config class ``cls`` to ``parser``, one argument group per section.

    ``keys``/``skip``: dotted keys or section prefixes (``"augment."``) to include / leave out.
    Every flag defaults to None ("not given"); :func:`given` reads them back as dotted keys.
    """
    groups: dict[str, Any] = {}
    for title, arg in _arguments(cls, _include(keys, skip)):
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title) if title else parser)
        if isinstance(arg, SharedFlag):
            first = next(s for s in walk(cls) if s.key == arg.keys[0])
            group.add_argument(arg.flag, dest=_shared_dest(arg.flag), default=None, help=arg.help,
                               metavar=arg.metavar or _metavar(arg.flag), **_value_kwargs(first))
            continue
        kwargs: dict[str, Any] = dict(dest=arg.key, default=None, help=arg.spec.help or None)
        if arg.kind is bool:
            kwargs["action"] = (argparse.BooleanOptionalAction if arg.spec.negatable
                                else "store_false" if arg.default is True else "store_true")
        else:
            kwargs.update(_value_kwargs(arg))
            if arg.spec.metavar or arg.spec.choices is None:
                kwargs["metavar"] = arg.spec.metavar or _metavar(arg.flags[0])
        group.add_argument(*arg.flags, **kwargs)


def _number_or_text(kind: type) -> Callable[[str], Any]:
    """A flag value as a number where it reads as one, else the text as written (lower case): the
    setting's check then accepts its words and names the flag for anything else, in one line."""
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text.strip().lower()
    parse.__name__ = kind.__name__
    return parse


def _metavar(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_").upper()  # what argparse shows for a plain --flag


def _value_kwargs(s: Setting) -> dict[str, Any]:
    kind = s.item if s.kind is tuple else s.kind
    kwargs: dict[str, Any] = {"type": kind} if kind in (int, float) else {}
    if s.spec.words and kind in (int, float):
        kwargs["type"] = _number_or_text(kind)
    if s.kind is tuple:
        kwargs["nargs"] = "+"
    if s.spec.choices is not None and s.kind is not tuple:
        kwargs["choices"] = s.spec.choices
    return kwargs


@dataclass(frozen=True)
class Given:
    """The settings a command line set: ``values`` by dotted key, and the flag that set each."""

    values: dict[str, Any]
    flags: dict[str, str]
    order: tuple[str, ...]  # the flags given, in the parser's order


def given(ns: argparse.Namespace, cls: type) -> Given:
    """What :func:`add_flags`' flags set on this command line (values not yet coerced)."""
    values: dict[str, Any] = {}
    flags: dict[str, str] = {}
    order: list[str] = []
    arguments = _arguments(cls, lambda key: True)
    for _, arg in arguments:  # shared flags first: a setting's own flag then wins
        if isinstance(arg, SharedFlag) and getattr(ns, _shared_dest(arg.flag), None) is not None:
            for key in arg.keys:
                values[key], flags[key] = getattr(ns, _shared_dest(arg.flag)), arg.flag
    for _, arg in arguments:
        if isinstance(arg, SharedFlag):
            if getattr(ns, _shared_dest(arg.flag), None) is not None:
                order.append(arg.flag)
        elif getattr(ns, arg.key, None) is not None:
            values[arg.key], flags[arg.key] = getattr(ns, arg.key), arg.flags[0]
            order.append(arg.flags[0])
    return Given(values, flags, tuple(order))


__all__ = ["Given", "Interval", "Setting", "SettingError", "SharedFlag", "Spec", "add_flags", "check", "check_number",
           "check_value", "coerce", "given", "ineffective", "load", "override", "section", "sections", "setting",
           "shared_flags", "walk"]
