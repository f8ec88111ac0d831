"""Decoding Stripe's form encoding (``items[0][price]``, ``metadata[key]``, ``expand[]``).

The SDK flattens nested dicts to ``a[b][c]`` and lists to ``a[0]``; we rebuild the nested
structure, turning dicts whose keys are all integers back into lists (in index order).
"""

import re
from collections.abc import Iterable
from typing import Any

from stripe_sim.errors import invalid_param

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _split(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    if not rest:
        return [head]
    parts = [head, *_SEGMENT.findall("[" + rest)]
    return parts


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn flat form pairs into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split(key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # ``expand[]=a&expand[]=b``: append
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise invalid_param(key, f"Invalid nesting for parameter: {key}")
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


# --- typed accessors: the wire carries strings; these give each parameter its type -------------


def as_int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_param(name, f"Invalid integer: {value}") from None


def as_bool(params: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid_param(name, f"Invalid boolean: {value}")


def as_list(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def as_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if isinstance(value, dict):
        return value
    if value is None or value == "":
        return {}
    raise invalid_param(name, f"Invalid hash: {name}")


def merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe merges metadata keys; an empty string unsets one, and ``metadata=""`` clears all."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise invalid_param("metadata", "Invalid metadata: must be a hash")
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


def require(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise invalid_param(name, f"Missing required param: {name}.", code="parameter_missing")
    return value
