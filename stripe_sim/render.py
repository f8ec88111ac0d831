"""Turning stored objects into API responses: computed fields, ``expand`` and list pages."""

import copy
from collections.abc import Callable
from typing import Any

from stripe_sim.errors import invalid_param
from stripe_sim.params import as_int
from stripe_sim.store import Store

Renderer = Callable[[Store, dict[str, Any], set[str]], dict[str, Any]]

# kind -> function adding computed fields (nested lists and the like) to a stored object.
RENDERERS: dict[str, Renderer] = {}

MAX_EXPAND_DEPTH = 4


def renderer(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn

    return register


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the simulator's private ``_`` fields."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def render(store: Store, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
    """The API shape of a stored object (or list page), with ``expand`` paths applied."""
    paths = [p.split(".") for p in (expand or [])]
    if len(paths) and any(len(p) > MAX_EXPAND_DEPTH for p in paths):
        raise invalid_param("expand", "You cannot expand more than 4 levels of a property.")
    if obj.get("object") in ("list", "search_result"):
        page = dict(obj)
        # ``expand[]=data.customer`` on a list applies ``customer`` to each element.
        inner = [p[1:] for p in paths if p and p[0] == "data"]
        page["data"] = [_render_one(store, item, inner) for item in obj["data"]]
        return page
    return _render_one(store, obj, paths)


def _render_one(store: Store, obj: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    top = {p[0] for p in paths if p}
    hook = RENDERERS.get(obj.get("object", ""))
    out = hook(store, obj, top) if hook else public(obj)
    for path in paths:
        if path:
            out = _expand(store, out, path)
    return out


def _expand(store: Store, node: Any, path: list[str]) -> Any:
    if not path:
        return node
    if isinstance(node, list):
        return [_expand(store, item, path) for item in node]
    if not isinstance(node, dict):
        return node
    head, rest = path[0], path[1:]
    if node.get("object") == "list" and head == "data":
        node["data"] = [_expand(store, item, rest) for item in node["data"]]
        return node
    if head not in node:
        return node
    value = node[head]
    if isinstance(value, str):
        target = store.find_expandable(value, head)
        if target is not None:
            node[head] = _render_one(store, target, [rest] if rest else [])
        return node
    if isinstance(value, list):
        expanded = []
        for item in value:
            target = store.find_expandable(item, "") if isinstance(item, str) else None
            if target is not None:
                expanded.append(_render_one(store, target, [rest]))
            else:
                expanded.append(_expand(store, item, rest))
        node[head] = expanded
        return node
    node[head] = _expand(store, value, rest)
    return node


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def paginate(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """Stripe's cursor pagination over items already in list order (newest first)."""
    limit = as_int(params, "limit", 10) or 10
    if not 1 <= limit <= 100:
        raise invalid_param("limit", "Invalid limit: must be between 1 and 100")
    after = params.get("starting_after")
    before = params.get("ending_before")
    ids = [item["id"] for item in items]
    if after:
        if after not in ids:
            raise invalid_param("starting_after", f"Invalid starting_after id: {after}")
        start = ids.index(after) + 1
        window = items[start:]
        return list_object(window[:limit], url, len(window) > limit)
    if before:
        if before not in ids:
            raise invalid_param("ending_before", f"Invalid ending_before id: {before}")
        end = ids.index(before)
        window = items[:end]
        # Stripe returns the ``limit`` items just before the cursor, still newest first.
        return list_object(window[-limit:], url, len(window) > limit)
    return list_object(items[:limit], url, len(items) > limit)


def filter_created(items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """``created[gte]=..`` style range filters, or an exact ``created=..``."""
    created = params.get("created")
    if created is None or created == "":
        return items
    if not isinstance(created, dict):
        exact = int(created)
        return [i for i in items if i.get("created") == exact]
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, bound in created.items():
        if op not in checks:
            raise invalid_param(f"created[{op}]", f"Invalid range operator: {op}")
        items = [i for i in items if checks[op](i.get("created", 0), int(bound))]
    return items
