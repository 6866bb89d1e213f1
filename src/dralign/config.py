"""Typed configuration: dataclasses are the single source of every option.

The command-line flags and the YAML keys are both derived from the dataclass fields: a field
`max_length` is the YAML key `max_length` and the flag `--max-length`; its help text is the
field's `help` metadata; its argparse group is the dataclass it belongs to. Precedence:
dataclass default < YAML file (`--config`) < command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .errors import BadOptionError


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a numeric option: low ≤ value (< or ≤) high."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False

    def __contains__(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)


SEED_RANGE = Range(0, 2**32 - 1)  # numpy's seeds; a seed outside them failed deep in set_seed


def option(default=dataclasses.MISSING, help: str = "", valid: Range | None = None, **kwargs):
    """A dataclass field with help text (shown by --help) and, for numbers, its valid range
    (checked when the config is built, from YAML or the command line)."""
    metadata = {"help": help, "valid": valid}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class ConfigError(BadOptionError):
    """A bad configuration value, naming where it came from."""


def _unwrap_optional(tp):
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _sections(cls) -> list[tuple[str, type]]:
    """(field name, dataclass type) of a config composed of section dataclasses."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _leaf_fields(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f, hints[f.name]


def _convert(value: Any, tp, where: str):
    """Coerce a YAML or command-line value to the field type `tp`, or raise ConfigError."""
    tp, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = get_origin(tp)
    if origin not in (list, tuple) and isinstance(value, (list, tuple, dict)):
        raise ConfigError(f"{where}: {_shown(value)} is a {type(value).__name__}; one value is expected")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    try:
        if origin in (list, tuple):
            (inner,) = get_args(tp)[:1]
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return [_convert(v, inner, where) for v in items]
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: {value!r} is not a boolean")
        if tp is float:
            number = float(value)
            if math.isfinite(number):  # no option means anything at inf or nan
                return number
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(tp, '__name__', tp)}") from None
    if tp is float:
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return value


def _shown(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters (a message stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def field_specs(cls) -> dict[str, tuple[Any, Range | None]]:
    """{field: (type, valid range)} of a flat dataclass or of one composed of sections."""
    hints = typing.get_type_hints(cls)
    specs: dict[str, tuple[Any, Range | None]] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            specs.update(field_specs(hints[f.name]))
        else:
            specs[f.name] = (hints[f.name], f.metadata.get("valid"))
    return specs


def check_value(value: Any, tp, valid: Range | None, label: str):
    """`value` converted to `tp` and checked against `valid`, or ConfigError naming `label`."""
    converted = _convert(value, tp, label)
    if valid is not None and converted is not None and converted not in valid:
        raise ConfigError(f"{label}: {converted!r} is out of range; valid values are {valid}")
    return converted


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Add one argparse group per section dataclass of `cls`, one flag per field."""
    for section, section_cls in _sections(cls):
        doc = (section_cls.__doc__ or section).strip().splitlines()[0]
        group = parser.add_argument_group(section, doc)
        for f, tp in _leaf_fields(section_cls):
            inner, _ = _unwrap_optional(tp)
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata.get("help", "")}
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            if default not in (None, "", []):
                kwargs["help"] += f" (default: {default})"
            if f.metadata.get("valid") is not None:
                kwargs["help"] += f" [{f.metadata['valid']}]"
            if inner is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif get_origin(inner) is Literal:
                kwargs["choices"] = list(get_args(inner))
            elif get_origin(inner) in (list, tuple):
                kwargs["nargs"] = "+"
            else:
                kwargs["metavar"] = f.name.upper()
            kwargs["help"] = kwargs["help"].replace("%", "%%")  # argparse %-formats help text
            group.add_argument(flag(f.name), **kwargs)


def build(cls, overrides: dict[str, Any], where: str = "command line"):
    """Instantiate section dataclasses of `cls` from a flat {field: value} mapping."""
    known, ranges = {}, {}
    for section, section_cls in _sections(cls):
        for f, tp in _leaf_fields(section_cls):
            known[f.name] = (section, tp)
            ranges[f.name] = f.metadata.get("valid")
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}")
    values: dict[str, dict] = {s: {} for s, _ in _sections(cls)}
    for name, value in overrides.items():
        section, tp = known[name]
        label = f"{where}: {flag(name) if where == 'command line' else name}"
        values[section][name] = check_value(value, tp, ranges.get(name), label)
    return cls(**{s: section_cls(**values[s]) for s, section_cls in _sections(cls)})


def check_ranges(config) -> None:
    """Refuse a config built in Python (not through `build`) whose numbers are out of their
    fields' ranges: the same check, and message, as on the command line."""
    for section, section_cls in _sections(type(config)):
        for f, _ in _leaf_fields(section_cls):
            valid, value = f.metadata.get("valid"), getattr(getattr(config, section), f.name)
            if valid is not None and isinstance(value, (int, float)) and value not in valid:
                raise ConfigError(f"{flag(f.name)}: {value!r} is out of range; valid values are {valid}")


MAX_YAML_BYTES = 1 << 20  # a config is a page of option: value lines; 1 MiB is far beyond one
MAX_YAML_VALUES = 10_000  # values once aliases are expanded: an alias bomb stops here, cheaply


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config: a flat mapping of option names (sections may also be nested).

    Refused in one line: a file over `MAX_YAML_BYTES`, and one whose values, counted with every
    alias (``*name``) expanded, exceed `MAX_YAML_VALUES` (a "billion laughs" alias bomb).
    """
    import yaml  # here, not at the top: `dralign train --help` reads no YAML

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES >> 20} MiB; a config is a mapping of option: value")
        data = yaml.safe_load(raw.decode("utf-8")) or {}
        _count_values(data, path)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):  # a nested section
            flat.update(value)
        else:
            flat[key] = value
    for key in flat:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {_shown(key)} is not an option name")
    return {k.replace("-", "_"): v for k, v in flat.items()}


def _count_values(data: Any, path: Path) -> None:
    """Raise ConfigError once `data` holds more than MAX_YAML_VALUES values, counting a value
    that aliases share once per use (as printing, converting or saving it would)."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: more than {MAX_YAML_VALUES} values once its aliases are "
                "expanded; a config is a mapping of option: value"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set)):
            stack.extend(value)


def option_names(cls) -> set[str]:
    return {f.name for _, section_cls in _sections(cls) for f, _ in _leaf_fields(section_cls)}


def from_args(cls, args: argparse.Namespace, translate=None):
    """dataclass default < YAML (args.config) < explicitly given command-line flags.

    translate: f(mapping, where) -> mapping of options, applied to the YAML first (e.g.
    `dralign.train.trl_config.translate`, which reads a TRL DPOConfig YAML)."""
    names = option_names(cls)  # flags are SUPPRESSed unless given: only options reach the namespace
    given = {k: v for k, v in vars(args).items() if k in names}
    from_yaml = load_yaml(args.config) if getattr(args, "config", None) else {}
    if translate is not None and from_yaml:
        from_yaml = translate(from_yaml, str(args.config))
    build(cls, from_yaml, where=str(args.config))  # a bad value in the file names the file
    return build(cls, {**from_yaml, **given}, where="command line")


def parse(cls, argv: list[str] | None, prog: str, description: str = ""):
    """A config `cls` from a command line of its own (`python -m ...` entry points): the same
    flags, `--config FILE.yaml`, range checks and no abbreviations as the `dralign` commands.
    A bad value exits with status 2 and one line, as argparse does."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--config", help="YAML file of options (keys are the option names)")
    add_arguments(parser, cls)
    args = parser.parse_args(argv)
    try:
        return from_args(cls, args)
    except ConfigError as err:
        parser.error(str(err))


def to_flat_dict(config) -> dict[str, Any]:
    out = {}
    for section, _ in _sections(type(config)):
        out[section] = dataclasses.asdict(getattr(config, section))
    return out


def save_yaml(config, path: str | Path) -> None:
    """Write the resolved config atomically (sections as nested mappings)."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(to_flat_dict(config), sort_keys=False))


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
