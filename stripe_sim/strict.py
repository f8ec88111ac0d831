"""Speaking Stripe strictly: requests validated and responses checked against the SDK's schema.

``data/stripe_api.json`` (made by ``python -m stripe_sim.sdk_schema`` from the pinned SDK) gives
every operation's parameter tree and every object's fields. Requests that Stripe would refuse are
answered as Stripe answers them (400 ``invalid_request_error`` with ``code`` and ``param`` in the
bracket form); response bodies and event payloads are checked against the object shapes, and a
mismatch is a *violation*: recorded for the test suite to fail on (``STRICT.take()``), or logged
by the demo.
"""

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from stripe_sim.errors import StripeError, invalid_param
from stripe_sim.sdk_schema import DATA_FILE

log = logging.getLogger("stripe_sim.strict")

_INT = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")


@dataclass
class Violation:
    object: str
    field: str
    expected: str
    actual: Any
    where: str = ""

    def __str__(self) -> str:
        actual = json.dumps(self.actual)[:120] if self.actual is not _MISSING else "(absent)"
        return f"{self.where}: {self.object}.{self.field} expected {self.expected}, got {actual}"


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING: Any = _Missing()


@dataclass
class Strict:
    """Counters and the violations seen since the last ``take()``; shared by every simulator."""

    requests: int = 0
    responses: int = 0
    events: int = 0
    violations_total: int = 0
    pending: list[Violation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, violations: list[Violation]) -> None:
        if not violations:
            return
        with self.lock:
            self.violations_total += len(violations)
            self.pending.extend(violations)
        for violation in violations:
            log.warning("stripe_sim: response differs from Stripe's shape: %s", violation)

    def take(self) -> list[Violation]:
        with self.lock:
            taken, self.pending = self.pending, []
        return taken

    def summary(self) -> str:
        return (
            f"stripe_sim strict: {self.requests} requests, {self.responses} responses and "
            f"{self.events} event payloads checked against stripe {schema().sdk_version}; "
            f"{self.violations_total} violations"
        )


STRICT = Strict()


class Schema:
    def __init__(self, data: dict[str, Any]) -> None:
        self.sdk_version: str = data["sdk_version"]
        self.api_version: str = data["api_version"]
        self.types: dict[str, dict[str, Any]] = data["types"]
        self.objects: dict[str, str] = data["objects"]
        self.operations = data["operations"]

    @cached_property
    def _matchers(self) -> dict[str, list[tuple[re.Pattern[str], int, dict[str, Any]]]]:
        out: dict[str, list[tuple[re.Pattern[str], int, dict[str, Any]]]] = {}
        for op in self.operations:
            pattern = re.escape(op["path"])
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", pattern)
            holes = op["path"].count("{")
            out.setdefault(op["method"], []).append((re.compile(f"^{pattern}/?$"), holes, op))
        for ops in out.values():
            ops.sort(key=lambda item: item[1])  # literal segments win over ``{id}``
        return out

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, _, op in self._matchers.get(method, []):
            if pattern.match(path):
                return op
        return None


_SCHEMA: Schema | None = None


def schema() -> Schema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = Schema(json.loads(DATA_FILE.read_text()))
    return _SCHEMA


# --- requests -------------------------------------------------------------------------------------


def validate_request(method: str, path: str, params: dict[str, Any]) -> None:
    """Raise Stripe's 400 for a parameter this operation does not take or a value of the wrong
    type; check ``expand`` paths against the response's shape."""
    op = schema().operation(method, path)
    if op is None:
        return
    with STRICT.lock:
        STRICT.requests += 1
    _check_param({"ref": op["params"]}, params, "", top=True)
    expand = params.get("expand")
    if expand:
        for entry in expand if isinstance(expand, list) else [expand]:
            _check_expand(op["returns"], str(entry))


def _bracket(prefix: str, key: str | int) -> str:
    return str(key) if not prefix else f"{prefix}[{key}]"


def _empty(name: str) -> StripeError:
    return invalid_param(
        name,
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset "
        f"a parameter; however '{name}' cannot be unset. You should remove '{name}' from your "
        f"request or supply a non-empty value.",
        code="parameter_invalid_empty",
    )


def _options(node: Any) -> list[Any]:
    return node["union"] if isinstance(node, dict) and "union" in node else [node]


def _check_param(node: Any, value: Any, name: str, top: bool = False) -> None:
    options = _options(node)
    if value == "":
        if "" in options or "any" in options:
            return
        raise _empty(name)
    errors: list[StripeError] = []
    for option in options:
        if option == "":
            continue
        try:
            _check_param_one(option, value, name, top)
            return
        except StripeError as exc:
            errors.append(exc)
    # The error of the option shaped like the value (a hash for a hash...) explains best.
    raise errors[-1] if isinstance(value, str) else errors[0]


def _one_of(values: list[Any]) -> str:
    words = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    if len(words) <= 2:
        return " or ".join(words)
    return ", ".join(words[:-1]) + ", or " + words[-1]


def _check_param_one(node: Any, value: Any, name: str, top: bool) -> None:
    if node == "any":
        return
    if isinstance(node, str):
        if not isinstance(value, str):
            raise invalid_param(name, f"Invalid {_kind_word(node)}: {_wire(value)}", code=_code(node))
        if node == "int" and not _INT.match(value):
            raise invalid_param(name, f"Invalid integer: {value}", code="parameter_invalid_integer")
        if node in ("float", "decimal") and not _DECIMAL.match(value):
            raise invalid_param(name, f"Invalid decimal: {value}")
        if node == "bool" and value not in ("true", "false"):
            raise invalid_param(name, f"Invalid boolean: {value}")
        if node == "null":
            raise invalid_param(name, f"Invalid {name}")
        return
    if isinstance(node, list):  # ["enum", ...]
        allowed = [str(v).lower() if isinstance(v, bool) else str(v) for v in node[1:]]
        if not isinstance(value, str) or value not in allowed:
            raise invalid_param(name, f"Invalid {name}: must be one of {_one_of(node[1:])}")
        return
    if "list" in node:
        if isinstance(value, dict) and not value:
            return
        if not isinstance(value, list):
            raise invalid_param(name, f"Invalid array: {name} must be an array")
        for index, item in enumerate(value):
            _check_param(node["list"], item, _bracket(name, index))
        return
    if "map" in node:
        if not isinstance(value, dict):
            raise invalid_param(name, f"Invalid object: {name} must be a hash")
        for key, item in value.items():
            if item == "" and node["map"] == "str":
                continue  # ``metadata[key]=`` unsets that key, on create a no-op
            _check_param(node["map"], item, _bracket(name, key))
        return
    if "ref" in node:
        if isinstance(value, list) and not value:
            value = {}
        if not isinstance(value, dict):
            raise invalid_param(name, f"Invalid object: {name} must be a hash")
        fields = schema().types[node["ref"]]["fields"]
        for key, item in value.items():
            if key not in fields:
                full = _bracket(name, key)
                raise invalid_param(full, f"Received unknown parameter: {full}", code="parameter_unknown")
            _check_param(fields[key][0], item, _bracket(name, key))
        for key, (_, required) in fields.items():
            if required and key not in value:
                full = _bracket(name, key)
                raise invalid_param(full, f"Missing required param: {full}.", code="parameter_missing")
        return
    raise AssertionError(f"unknown schema node {node!r}")


def _kind_word(node: str) -> str:
    return {"int": "integer", "str": "string", "bool": "boolean"}.get(node, node)


def _code(node: str) -> str | None:
    return {"int": "parameter_invalid_integer"}.get(node)


def _wire(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _check_expand(returns: Any, path: str) -> None:
    parts = path.split(".")
    node = returns
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        node = _strip_null(node)
        if isinstance(node, dict) and node.get("ref") in ("list", "search_result"):
            if part != "data":
                raise _not_expandable(path, part)
            node = node["of"]
            if last:
                raise _not_expandable(path, part)
            continue
        target = _resource_of(node)
        if target is None:
            raise _not_expandable(path, part)
        fields = schema().types[target]["fields"]
        if part not in fields:
            raise _not_expandable(path, part)
        child = fields[part]
        if last:
            if not _expandable(child):
                raise _not_expandable(path, part)
            return
        node = child


def _strip_null(node: Any) -> Any:
    options = [o for o in _options(node) if o != "null"]
    if len(options) == 1:
        return options[0]
    refs = [o for o in options if isinstance(o, dict) and ("ref" in o or "list" in o)]
    return refs[0] if len(refs) == 1 else {"union": options}


def _resource_of(node: Any) -> str | None:
    for option in _options(node):
        if isinstance(option, dict) and "list" in option:
            return _resource_of(option["list"])
        if isinstance(option, dict) and "ref" in option and option["ref"] not in ("list", "search_result"):
            return option["ref"]
    return None


def _expandable(node: Any) -> bool:
    """An id that can become its object, or an includable list (``invoice.payments``)."""
    options = [o for o in _options(node) if o != "null"]
    if (
        "null" not in _options(node)
        and len(options) == 1
        and isinstance(options[0], dict)
        and "list" in options[0]
    ):
        return _expandable(options[0]["list"])  # ``discounts``: a list of expandable ids
    has_id = "str" in options
    has_object = any(
        isinstance(o, dict) and o.get("ref") in schema().objects and "object" in schema().types[o["ref"]]
        for o in options
    )
    # Fields left out unless asked for (``invoice.payments``, ``price.tiers``) are typed as
    # optional lists or objects: the SDK does not tell them from other nullable ones.
    nullable = "null" in _options(node)
    includable = nullable and all(isinstance(o, dict) for o in options)
    return (has_id and has_object) or includable


def _not_expandable(path: str, part: str) -> StripeError:
    return invalid_param("expand", f"This property cannot be expanded ({part}).")


# --- responses --------------------------------------------------------------------------------------


def check_response(
    method: str, path: str, body: dict[str, Any], into: Strict | None = None
) -> list[Violation]:
    into = into or STRICT
    op = schema().operation(method, path)
    node = op["returns"] if op is not None else "any"
    with into.lock:
        into.responses += 1
    where = f"{method} {path}"
    out: list[Violation] = []
    _shape(node, body, body.get("object", "?"), "", out, where)
    into.record(out)
    return out


def check_event(event: dict[str, Any], into: Strict | None = None) -> list[Violation]:
    """The envelope, its ``type`` among Stripe's event types, and ``data.object`` as its object."""
    into = into or STRICT
    with into.lock:
        into.events += 1
    out: list[Violation] = []
    _shape({"ref": "event"}, event, "event", "", out, f"event {event.get('type')}")
    into.record(out)
    return out


def _describe(node: Any) -> str:
    if isinstance(node, str):
        return node or "''"
    if isinstance(node, list):
        return "one of " + "|".join(map(str, node[1:]))
    if "union" in node:
        return " or ".join(_describe(o) for o in node["union"])
    if "list" in node:
        return f"array of {_describe(node['list'])}"
    if "map" in node:
        return f"hash of {_describe(node['map'])}"
    if node.get("ref") in ("list", "search_result"):
        return f"{node['ref']} of {_describe(node['of'])}"
    return f"{node['ref']} object"


def _shape(node: Any, value: Any, obj: str, path: str, out: list[Violation], where: str) -> bool:
    """True when ``value`` fits ``node``; records the violations of the best-fitting option."""
    options = _options(node)
    if len(options) > 1:
        attempts: list[list[Violation]] = []
        for option in options:
            trial: list[Violation] = []
            if _shape(option, value, obj, path, trial, where):
                return True
            attempts.append(trial)
        # A dict that failed as an object is explained by that object's violations.
        for option, trial in zip(options, attempts, strict=True):
            if isinstance(value, dict) and isinstance(option, dict) and "ref" in option and trial:
                out.extend(trial)
                return False
        out.append(Violation(obj, path, _describe(node), value, where))
        return False
    node = options[0]
    bad = Violation(obj, path, _describe(node), value, where)
    if isinstance(node, str):
        ok = {
            "any": True,
            "null": value is None,
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "decimal": isinstance(value, str) and bool(_DECIMAL.match(value)),
            "": value == "",
        }[node]
        if node == "any" and isinstance(value, dict) and value.get("object") in schema().objects:
            # ``event.data.object`` and other untyped slots: checked as the object they hold.
            return _shape({"ref": schema().objects[value["object"]]}, value, value["object"], "", out, where)
        if not ok:
            out.append(bad)
        return ok
    if isinstance(node, list):
        if value not in node[1:]:
            out.append(bad)
            return False
        return True
    if "list" in node:
        if not isinstance(value, list):
            out.append(bad)
            return False
        results = [
            _shape(node["list"], item, obj, f"{path}[{i}]", out, where) for i, item in enumerate(value)
        ]
        return all(results)
    if "map" in node:
        if not isinstance(value, dict):
            out.append(bad)
            return False
        if node["map"] == "any" and value.get("object") in schema().objects:
            # ``event.data.object``: checked as the object it holds.
            return _shape({"ref": schema().objects[value["object"]]}, value, value["object"], "", out, where)
        return all([_shape(node["map"], v, obj, f"{path}.{k}", out, where) for k, v in value.items()])
    ref = node["ref"]
    if not isinstance(value, dict):
        out.append(bad)
        return False
    if ref in ("list", "search_result"):
        return _shape_list(node, value, obj, path, out, where)
    entry = schema().types[ref]
    if value.get("deleted") is True and "object" in entry:
        return _shape_deleted(ref, value, out, where)
    if "object" in entry:
        obj, path = entry["object"], ""
        if value.get("object") != entry["object"]:
            out.append(Violation(obj, "object", repr(entry["object"]), value.get("object"), where))
            return False
    ok = True
    fields = entry["fields"]
    never_null = entry.get("never_null", ())
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if key not in fields:
            out.append(Violation(obj, child, "no such field in this API version", item, where))
            ok = False
            continue
        if item is None and key in never_null:
            out.append(Violation(obj, child, "left out, never null", None, where))
            ok = False
            continue
        ok = _shape(fields[key], item, obj, child, out, where) and ok
    # stripe-node's declarations say which fields may be left out; where they say nothing, the
    # Python SDK's ``Optional`` (absent or null alike) is all there is to go by.
    absent = entry.get("absent")
    for key, field_node in fields.items():
        if key in value:
            continue
        if key in (absent if absent is not None else ()) or key == "deleted":
            continue
        if absent is None and "null" in _options(field_node):
            continue
        child = f"{path}.{key}" if path else key
        out.append(Violation(obj, child, _describe(field_node), _MISSING, where))
        ok = False
    return ok


def _shape_list(
    node: Any, value: dict[str, Any], obj: str, path: str, out: list[Violation], where: str
) -> bool:
    kind = node["ref"]
    expected = {"object", "data", "has_more", "url"}
    if kind == "search_result":
        expected |= {"next_page", "total_count"}
    ok = True
    for key in value:
        if key not in expected:
            out.append(
                Violation(
                    f"{obj}{'.' + path if path else ''} ({kind})", key, "no such field", value[key], where
                )
            )
            ok = False
    if value.get("object") != kind or not isinstance(value.get("data"), list):
        out.append(Violation(obj, path or "object", kind, value.get("object"), where))
        return False
    if not isinstance(value.get("has_more"), bool) or not isinstance(value.get("url"), str):
        out.append(
            Violation(obj, f"{path}.has_more/url" if path else "has_more/url", "bool/str", value, where)
        )
        ok = False
    for index, item in enumerate(value["data"]):
        ok = (
            _shape(node["of"], item, obj, f"{path}.data[{index}]" if path else f"data[{index}]", out, where)
            and ok
        )
    return ok


def _shape_deleted(ref: str, value: dict[str, Any], out: list[Violation], where: str) -> bool:
    obj = schema().types[ref]["object"]
    extra = set(value) - {"id", "object", "deleted"}
    if extra or not isinstance(value.get("id"), str) or value.get("object") != obj:
        out.append(
            Violation(obj, ",".join(sorted(extra)) or "id", "id, object and deleted only", value, where)
        )
        return False
    return True
