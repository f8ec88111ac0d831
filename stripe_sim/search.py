"""A small subset of Stripe's search query language: ``field:'v'`` and ``metadata['k']:'v'``
clauses joined by AND or OR (not mixed), plus ``-`` negation and ``~`` substring match."""

import re
from typing import Any

from stripe_sim.errors import invalid_param

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_.]+)(?:\[['"](?P<key>[^'"]+)['"]\])?\s*"""
    r"""(?P<op>:|~|>=|<=|>|<)\s*(?:['"](?P<quoted>[^'"]*)['"]|(?P<bare>[^\s]+))\s*"""
)


def matches(obj: dict[str, Any], query: str) -> bool:
    if not query.strip():
        raise invalid_param("query", "Missing required param: query.", code="parameter_missing")
    joiner = " OR " if " OR " in query else " AND "
    results = [_clause(obj, part) for part in query.split(joiner)]
    return any(results) if joiner == " OR " else all(results)


def _clause(obj: dict[str, Any], text: str) -> bool:
    found = _CLAUSE.fullmatch(text)
    if not found:
        raise invalid_param("query", f"Invalid search query: {text!r}")
    value = found["quoted"] if found["quoted"] is not None else found["bare"]
    actual: Any = obj.get(found["field"])
    if found["key"] is not None:
        actual = (actual or {}).get(found["key"])
    op = found["op"]
    if op == ":":
        result = actual is not None and str(actual).lower() == value.lower()
        if isinstance(actual, bool):
            result = str(actual).lower() == value.lower()
    elif op == "~":
        result = actual is not None and value.lower() in str(actual).lower()
    else:
        try:
            left, right = int(actual), int(value)
        except (TypeError, ValueError):
            return False
        result = {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]
    return not result if found["neg"] else result


def search_result(data: list[dict[str, Any]], url: str, limit: int) -> dict[str, Any]:
    return {
        "object": "search_result",
        "data": data[:limit],
        "has_more": len(data) > limit,
        "next_page": None,
        "url": url,
    }
