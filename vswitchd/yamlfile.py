"""Reading YAML with positions: mappings without duplicate keys, typed values, and errors that
say FILE:LINE: key: problem (as Faucet's conf.py does for its schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a file is parsed: without --config, never (issue 16)
    import yaml


class ConfigError(Exception):
    """A configuration problem; str() is 'FILE:LINE: key: problem'."""


def where(path: str, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def is_null(node: yaml.Node) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")


def mapping(path: str, node: yaml.Node, what: str, loader: yaml.SafeLoader) -> dict:
    """Construct a mapping node into {key: (value, value_node)}, rejecting duplicates."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where(path, node)}: {what} must be a mapping")
    out: dict[str, tuple[Any, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigError(f"{where(path, key_node)}: key {key!r} must be a string")
        if key in out:
            first = out[key][1].start_mark.line + 1
            raise ConfigError(
                f"{where(path, key_node)}: duplicate key '{key}' (first set on line {first})"
            )
        out[key] = (loader.construct_object(value_node, deep=True), value_node)
    return out


def typed(path: str, key: str, value: Any, node: yaml.Node, want: type) -> Any:
    import yaml

    if (want is str and isinstance(value, bool) and isinstance(node, yaml.ScalarNode)
            and node.style is None):
        return node.value  # a string key written `off` or `yes`: YAML 1.1 made it a boolean
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(
            f"{where(path, node)}: {key}: expected {want.__name__}, got {type(value).__name__} "
            f"{value!r}"
        )
    return value


def fields(path: str, node: yaml.Node, what: str, loader: yaml.SafeLoader,
           schema: dict[str, type]) -> dict[str, tuple[Any, yaml.Node]]:
    """A mapping whose keys must be in SCHEMA, each value of its type (null: an empty list or
    mapping where one is expected)."""
    out = {}
    for key, (value, vnode) in mapping(path, node, what, loader).items():
        if key not in schema:
            raise ConfigError(f"{where(path, vnode)}: unknown key '{what}.{key}' "
                              f"(known: {', '.join(schema)})")
        if value is None and schema[key] in (list, dict):
            value = schema[key]()
        out[key] = (typed(path, f"{what}.{key}", value, vnode, schema[key]), vnode)
    return out
