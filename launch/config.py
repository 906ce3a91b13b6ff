"""Strict YAML loading with file and line numbers in every error.

Site profiles, experiment files and search spaces are all read through this module.
PyYAML implements YAML 1.1, whose implicit typing surprises users: ``yes`` is a bool,
``2:00:00`` is the sexagesimal integer 7200, ``"32"`` is a string. The loader composes
the node tree with ``yaml.SafeLoader`` (no Python tags are ever constructed) and the
typed getters of :class:`Section` check each scalar's resolved tag against the type the
key needs, so such values are reported instead of silently converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_NUMBER_TEXT = re.compile(r"^[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    The message starts with ``FILE:LINE:`` and names the key, so a user can jump to it.
    """

    def __init__(self, source: str, line: int | None, key: str, message: str):
        self.source = source
        self.line = line
        self.key = key
        where = f"{source}:{line}" if line is not None else source
        label = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {label}{message}")


def _describe(node: yaml.Node) -> str:
    """Name what YAML made of a scalar, for error messages."""
    kinds = {_INT: "an integer", _FLOAT: "a float", _BOOL: "a bool", _NULL: "null"}
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _STR:
        return f"the string {node.value!r}"
    return f"{kinds.get(node.tag, node.tag)} ({node.value!r})"


def _is_sexagesimal(node: yaml.Node) -> bool:
    return node.tag in (_INT, _FLOAT) and ":" in str(node.value)


class Section:
    """A YAML mapping with typed, line-aware getters.

    ``path`` is the dotted key path from the document root, used in messages.
    """

    def __init__(self, node: yaml.MappingNode, source: str, path: str = ""):
        self.node = node
        self.source = source
        self.path = path
        self._entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                raise ConfigError(
                    source,
                    key_node.start_mark.line + 1,
                    self._join(str(key_node.value)),
                    f"keys must be plain strings, got {_describe(key_node)}",
                )
            name = key_node.value
            if name in self._entries:
                first = self._entries[name][0].start_mark.line + 1
                raise ConfigError(
                    source,
                    key_node.start_mark.line + 1,
                    self._join(name),
                    f"duplicate key (first defined on line {first}); keep one of them",
                )
            self._entries[name] = (key_node, value_node)

    # -- structure ---------------------------------------------------------------

    def _join(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def line_of(self, key: str) -> int:
        if key in self._entries:
            return self._entries[key][0].start_mark.line + 1
        return self.line

    def error(self, key: str, message: str) -> ConfigError:
        """Build a ConfigError that points at ``key`` (or at this section if absent)."""
        return ConfigError(self.source, self.line_of(key), self._join(key), message)

    def check_keys(self, allowed: dict[str, str] | list[str], required: tuple[str, ...] = ()):
        """Raise on unknown keys (listing the valid ones) and on missing required keys.

        ``allowed`` may map each key to a short description of its default, which the
        error message then shows next to the key.
        """
        for key in self._entries:
            if key not in allowed:
                if isinstance(allowed, dict):
                    valid = ", ".join(f"{k} ({v})" if v else k for k, v in allowed.items())
                else:
                    valid = ", ".join(allowed)
                raise self.error(key, f"unknown key; valid keys are: {valid}")
        for key in required:
            if key not in self._entries:
                raise ConfigError(
                    self.source,
                    self.line,
                    self._join(key),
                    "missing required key" + (f" in '{self.path}'" if self.path else ""),
                )

    def _value_node(self, key: str) -> yaml.Node:
        return self._entries[key][1]

    def items(self) -> Iterator[tuple[str, yaml.Node]]:
        for name, (_, value) in self._entries.items():
            yield name, value

    # -- typed getters -----------------------------------------------------------

    def _scalar(self, key: str, default: Any, required: bool) -> yaml.ScalarNode | None:
        if key not in self._entries:
            if required:
                raise ConfigError(self.source, self.line, self._join(key), "missing required key")
            return None
        node = self._value_node(key)
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(key, f"expected a single value, got {_describe(node)}")
        return node

    def get_section(self, key: str, required: bool = True) -> Section | None:
        if key not in self._entries:
            if required:
                raise ConfigError(self.source, self.line, self._join(key), "missing required key")
            return None
        node = self._value_node(key)
        if not isinstance(node, yaml.MappingNode):
            raise self.error(key, f"expected a mapping, got {_describe(node)}")
        return Section(node, self.source, self._join(key))

    def get_str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        node = self._scalar(key, default, required)
        if node is None:
            return default
        if node.tag != _STR:
            hint = ""
            if _is_sexagesimal(node):
                hint = f"; YAML 1.1 reads {node.value} as a base-60 number"
            raise self.error(
                key, f"expected a string, got {_describe(node)}{hint}; put the value in quotes"
            )
        return str(node.value)

    def get_bool(self, key: str, default: bool | None = None, required: bool = False):
        node = self._scalar(key, default, required)
        if node is None:
            return default
        if node.tag != _BOOL or node.value not in ("true", "false", "True", "False"):
            raise self.error(key, f"expected true or false, got {_describe(node)}")
        return node.value.lower() == "true"

    def get_int(self, key: str, default: int | None = None, required: bool = False):
        node = self._scalar(key, default, required)
        if node is None:
            return default
        self._check_number(key, node)
        if node.tag != _INT:
            raise self.error(key, f"expected an integer, got {_describe(node)}")
        return int(yaml.safe_load(node.value))

    def get_float(self, key: str, default: float | None = None, required: bool = False):
        node = self._scalar(key, default, required)
        if node is None:
            return default
        self._check_number(key, node)
        value = float(yaml.safe_load(node.value)) if node.tag == _INT else _parse_float(node)
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {node.value!r}")
        return value

    def _check_number(self, key: str, node: yaml.ScalarNode) -> None:
        if _is_sexagesimal(node):
            raise self.error(
                key,
                f"YAML 1.1 reads {node.value!r} as a base-60 number "
                f"({yaml.safe_load(node.value)}); write the plain number",
            )
        if node.tag == _STR and _NUMBER_TEXT.match(node.value.strip()):
            raise self.error(
                key, f"expected a number, got the string {node.value!r}; remove the quotes"
            )
        if node.tag not in (_INT, _FLOAT):
            raise self.error(key, f"expected a number, got {_describe(node)}")

    def get_list(self, key: str, required: bool = False) -> list[yaml.Node] | None:
        if key not in self._entries:
            if required:
                raise ConfigError(self.source, self.line, self._join(key), "missing required key")
            return None
        node = self._value_node(key)
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(key, f"expected a list, got {_describe(node)}")
        return list(node.value)

    def get_str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        nodes = self.get_list(key)
        if nodes is None:
            return list(default or [])
        values = []
        for index, node in enumerate(nodes):
            if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
                raise ConfigError(
                    self.source,
                    node.start_mark.line + 1,
                    f"{self._join(key)}[{index}]",
                    f"expected a string, got {_describe(node)}; put the value in quotes",
                )
            values.append(node.value)
        return values

    def get_str_map(self, key: str) -> dict[str, str]:
        """Read a mapping of string to string, such as environment variables."""
        section = self.get_section(key, required=False)
        if section is None:
            return {}
        return {name: section.get_str(name, required=True) for name in section.keys()}

    def scalar_value(self, key: str) -> Any:
        """Return a scalar as YAML resolves it (str, int, float, bool or None)."""
        node = self._scalar(key, None, True)
        return yaml.safe_load(node.value) if node.tag != _STR else node.value


def _parse_float(node: yaml.ScalarNode) -> float:
    text = node.value.strip().lower().replace("_", "")
    if text in (".inf", "+.inf"):
        return math.inf
    if text == "-.inf":
        return -math.inf
    if text == ".nan":
        return math.nan
    return float(text)


def _check_tags(node: yaml.Node, source: str) -> None:
    """Reject non-standard tags such as ``!!python/object`` anywhere in the tree."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.tag not in _STANDARD_TAGS:
            raise ConfigError(
                source,
                current.start_mark.line + 1,
                "",
                f"tag {current.tag!r} is not allowed; only plain YAML values are accepted",
            )
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                stack.extend((key_node, value_node))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def parse_section(text: str, source: str) -> Section:
    """Compose ``text`` into a root :class:`Section`; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, line, "", f"invalid YAML: {problem}") from exc
    if node is None:
        raise ConfigError(source, None, "", "the file is empty; expected a mapping of keys")
    _check_tags(node, source)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            source,
            node.start_mark.line + 1,
            "",
            f"expected a mapping at top level, got {_describe(node)}",
        )
    return Section(node, source)


def load_section(path: str | Path) -> Section:
    """Read a YAML file into a root :class:`Section`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "", "file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, "", f"cannot read the file: {exc}") from exc
    return parse_section(text, str(path))


def parse_walltime_min(text: str, section: Section, key: str) -> int:
    """Convert "MM", "HH:MM:SS" or "D-HH:MM:SS" (and "[HH:]MM" for LSF) to minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+)(?::(\d+))?", text.strip())
    if not match:
        raise section.error(key, f'invalid walltime {text!r}; use "HH:MM:SS" or "D-HH:MM:SS"')
    days, first, second, third = match.groups()
    if third is not None:
        hours, minutes, seconds = int(first or 0), int(second), int(third)
    elif first is not None:
        hours, minutes, seconds = int(first), int(second), 0
    else:
        # A lone number is a count of minutes and may exceed 59.
        hours, minutes, seconds = 0, int(second), 0
    if (minutes >= 60 and (first is not None or days)) or seconds >= 60:
        raise section.error(
            key, f"invalid walltime {text!r}: minutes and seconds must be below 60"
        )
    total = int(days or 0) * 24 * 60 + hours * 60 + minutes + math.ceil(seconds / 60)
    if total <= 0:
        raise section.error(key, f"walltime {text!r} must be positive")
    return total
