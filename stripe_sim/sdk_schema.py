"""Stripe's API as the pinned ``stripe`` SDK describes it: request parameters and object shapes.

The SDK is generated from Stripe's OpenAPI spec. Its services name every operation (method, path,
parameter TypedDict, returned class); its ``stripe/params`` TypedDicts give each operation's
parameter tree (nested dicts, lists, literals, ``Literal['']`` where a value can be unset); its
resource classes give each object's fields (``Optional`` where null is allowed, ``Literal`` enums,
``ExpandableField`` ids, nested classes). ``python -m stripe_sim.sdk_schema`` turns all of that
into ``stripe_sim/data/stripe_api.json`` (committed, regenerated whenever the SDK is bumped), which
``stripe_sim.strict`` reads to validate requests and check responses. A test fails when the
installed SDK differs from the one the file was made from.

Type nodes in the file: ``"str" | "int" | "bool" | "float" | "decimal" | "any" | "null" | ""``
(``""``: the empty string that unsets a parameter), ``["enum", v...]``, ``{"ref": name}``,
``{"list": node}``, ``{"map": node}``, ``{"union": [node...]}``.
"""

import ast
import collections.abc
import datetime
import decimal
import importlib
import json
import pkgutil
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typing_extensions

DATA_FILE = Path(__file__).parent / "data" / "stripe_api.json"

_PRIMITIVES: dict[Any, str] = {
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    decimal.Decimal: "decimal",
    datetime.datetime: "int",
    Any: "any",
    object: "any",
}


class _Deriver:
    def __init__(self) -> None:
        import stripe
        from stripe._object_classes import OBJECT_CLASSES

        self.stripe = stripe
        self.types: dict[str, dict[str, Any]] = {}
        self.names: dict[type, str] = {}
        self.resources: dict[str, str] = {}  # object name -> type name
        self.namespace: dict[str, Any] = {}
        for object_name, (module, cls_name) in OBJECT_CLASSES.items():
            if object_name in ("list", "search_result", "file_upload"):
                continue
            cls = getattr(importlib.import_module(module), cls_name)
            self.namespace.setdefault(cls_name, cls)
            self.names[cls] = object_name
            self.resources[object_name] = object_name
        from stripe._list_object import ListObject
        from stripe._search_result_object import SearchResultObject
        from stripe._stripe_object import StripeObject, UntypedStripeObject

        self.ListObject = ListObject
        self.SearchResultObject = SearchResultObject
        self.StripeObject = StripeObject
        self.UntypedStripeObject = UntypedStripeObject
        self.namespace.update(
            {
                "ListObject": ListObject,
                "SearchResultObject": SearchResultObject,
                "StripeObject": StripeObject,
                "UntypedStripeObject": UntypedStripeObject,
            }
        )

    # --- naming ---------------------------------------------------------------------------------

    def name_of(self, cls: type) -> str:
        if cls in self.names:
            return self.names[cls]
        qual = cls.__qualname__
        outer_name = qual.split(".")[0]
        outer = getattr(sys.modules[cls.__module__], outer_name, None)
        if (
            outer is not None
            and outer is not cls
            and outer in self.names
            and "." in qual
            and outer.__module__ == cls.__module__
        ):
            name = self.names[outer] + "." + qual.split(".", 1)[1]
        else:
            name = cls.__module__.rsplit(".", 1)[-1].lstrip("_") + ":" + qual
        self.names[cls] = name
        return name

    # --- types ----------------------------------------------------------------------------------

    def hints(self, cls: type) -> dict[str, Any]:
        module = sys.modules[cls.__module__]
        globalns = {
            **vars(typing),
            **vars(typing_extensions),
            **self.namespace,
            **vars(module),
            **_type_checking_names(module),
        }
        localns: dict[str, Any] = {}
        # Nested classes refer to their siblings and to the enclosing class's names.
        parts = cls.__qualname__.split(".")
        node: Any = module
        for part in parts[:-1]:
            node = getattr(node, part)
            localns.update({k: v for k, v in vars(node).items() if isinstance(v, type)})
        localns.update({k: v for k, v in vars(cls).items() if isinstance(v, type)})
        annotations: dict[str, Any] = {}
        typed_dict = typing_extensions.is_typeddict(cls)
        if typed_dict:
            annotations = dict(cls.__annotations__)
        else:
            for base in reversed(cls.__mro__):
                annotations.update(vars(base).get("__annotations__", {}))
        out: dict[str, Any] = {}
        for field, ann in annotations.items():
            if (typed_dict and field in _REQUEST_OPTIONS) or field.startswith("_"):
                continue
            if isinstance(ann, str):
                ann = typing.ForwardRef(ann)
            out[field] = typing._eval_type(ann, globalns, localns)  # type: ignore[attr-defined]
        return out

    def node(self, tp: Any) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing_extensions.NotRequired, typing_extensions.Required):
            return self.node(args[0])
        if tp is type(None):
            return "null"
        if tp in _PRIMITIVES:
            return _PRIMITIVES[tp]
        if origin is typing.Literal or origin is typing_extensions.Literal:
            if args == ("",):
                return ""
            return ["enum", *args]
        if origin in (typing.Union, types.UnionType):
            options: list[Any] = []
            for arg in args:
                sub = self.node(arg)
                for item in sub["union"] if isinstance(sub, dict) and "union" in sub else [sub]:
                    if item not in options:
                        options.append(item)
            enums = [o for o in options if isinstance(o, list)]
            if enums and "str" in options:
                # The SDK widens every enum with ``str`` for values a later API version adds;
                # this version's values are the literals.
                options = [o for o in options if o != "str" and not isinstance(o, list)]
                options.insert(0, ["enum", *[v for e in enums for v in e[1:]]])
            return options[0] if len(options) == 1 else {"union": options}
        if origin in (list, tuple, collections.abc.Sequence):
            return {"list": self.node(args[0]) if args else "any"}
        if origin in (dict, collections.abc.Mapping):
            return {"map": self.node(args[1]) if len(args) == 2 else "any"}
        if origin is not None and isinstance(origin, type):
            if issubclass(origin, self.UntypedStripeObject):
                return {"map": self.node(args[0]) if args else "any"}
            if issubclass(origin, self.ListObject):
                return {"ref": "list", "of": self.node(args[0])}
            if issubclass(origin, self.SearchResultObject):
                return {"ref": "search_result", "of": self.node(args[0])}
        if isinstance(tp, type):
            if tp is self.UntypedStripeObject or tp is self.StripeObject:
                return "any"
            if typing_extensions.is_typeddict(tp):
                return {"ref": self.typeddict(tp)}
            if issubclass(tp, self.StripeObject):
                return {"ref": self.resource(tp)}
        if isinstance(tp, typing.TypeVar):
            return "any"
        raise TypeError(f"no schema node for {tp!r}")

    def typeddict(self, cls: type) -> str:
        # ``SessionCreateParams`` exists for checkout, billing_portal and financial_connections.
        package = cls.__module__.removeprefix("stripe.params").rsplit(".", 1)[0].strip(".")
        name = f"{package}.{cls.__name__}" if package else cls.__name__
        if name in self.types:
            return name
        self.types[name] = {}  # placeholder against recursion
        fields: dict[str, Any] = {}
        required = set(getattr(cls, "__required_keys__", set()))
        for field, tp in self.hints(cls).items():
            if field in _REQUEST_OPTIONS:
                continue
            fields[field] = [self.node(tp), field in required]
        self.types[name] = {"fields": fields}
        return name

    def resource(self, cls: type) -> str:
        name = self.name_of(cls)
        if name in self.types:
            return name
        self.types[name] = {}
        fields: dict[str, Any] = {}
        for field, tp in self.hints(cls).items():
            if field.isupper() or typing.get_origin(tp) is typing.ClassVar:
                continue
            fields[field] = self.node(tp)
        entry: dict[str, Any] = {"fields": fields}
        if name in self.resources:
            entry["object"] = name
        self.types[name] = entry
        return name

    # --- operations -----------------------------------------------------------------------------

    def operations(self) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        root = Path(self.stripe.__file__).parent
        for info in pkgutil.walk_packages([str(root)], "stripe."):
            if not info.name.endswith("_service") or ".v2" in info.name:
                continue
            path = root.joinpath(*info.name.split(".")[1:]).with_suffix(".py")
            module = importlib.import_module(info.name)
            for op in _scan_service(path.read_text()):
                params_cls = _type_checking_names(module).get(op.pop("params_type"))
                if params_cls is None:
                    continue
                op["params"] = self.typeddict(params_cls)
                op["returns"] = self._returns(op.pop("return_type"), module)
                ops.append(op)
        unique = {(o["method"], o["path"]): o for o in ops}
        return sorted(unique.values(), key=lambda o: (o["path"], o["method"]))

    def _returns(self, annotation: str, module: Any) -> Any:
        if not annotation:
            return "any"
        namespace = {**vars(typing), **self.namespace, **vars(module), **_type_checking_names(module)}
        try:
            return self.node(eval(annotation, namespace))  # noqa: S307 - the SDK's own annotation
        except Exception:
            return "any"


# Options the SDK takes beside the parameters (``RequestOptions``); never sent as form fields.
_REQUEST_OPTIONS = {
    "api_key",
    "stripe_version",
    "stripe_account",
    "stripe_context",
    "idempotency_key",
    "headers",
    "max_network_retries",
    "content_type",
}


_TC_CACHE: dict[str, dict[str, Any]] = {}


def _type_checking_names(module: Any) -> dict[str, Any]:
    """The names a module imports under ``if TYPE_CHECKING:`` (its annotations' forward refs)."""
    if module.__name__ in _TC_CACHE:
        return _TC_CACHE[module.__name__]
    names: dict[str, Any] = {}
    tree = ast.parse(Path(module.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            code = compile(ast.Module(body=node.body, type_ignores=[]), module.__file__, "exec")
            exec(code, names)  # noqa: S102 - the SDK's own import statements
    names.pop("__builtins__", None)
    _TC_CACHE[module.__name__] = names
    return names


def _scan_service(source: str) -> list[dict[str, Any]]:
    """(method, path template, params type, return annotation) of each sync service method."""
    out: list[dict[str, Any]] = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        params_type = ""
        for arg in fn.args.args:
            if arg.arg == "params" and arg.annotation is not None:
                text = ast.unparse(arg.annotation)
                params_type = text.replace("Optional[", "").rstrip("]").strip("'\"")
        for call in ast.walk(fn):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("_request", "_request_stream")
                and len(call.args) >= 2
                and isinstance(call.args[0], ast.Constant)
            ):
                continue
            method = call.args[0].value.upper()
            target = call.args[1]
            if isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute):
                target = target.func.value
            if not isinstance(target, ast.Constant) or not str(target.value).startswith("/v1/"):
                continue
            returns = ""
            if fn.returns is not None:
                returns = ast.unparse(fn.returns).strip("'\"")
            out.append(
                {
                    "method": method,
                    "path": target.value,
                    "params_type": params_type,
                    "return_type": returns,
                }
            )
    return out


# --- which fields may be absent: stripe-node's declarations ----------------------------------------
#
# The Python SDK types a field that may be left out and one that may be null alike (``Optional``).
# stripe-node, generated from the same spec, tells them apart (``account?: string`` is left out
# when empty; ``footer: string | null`` is always sent). Its declarations for the same API version
# add that to each object type.

_TS_SCOPE = re.compile(r"^(?:export )?(?:declare )?(namespace|interface|class) (\w+)\b.*\{$")
_TS_FIELD = re.compile(r"^(\w+)(\??): (.*)$")


def _ts_key(package: str, qualname: str) -> str:
    return package.replace("_", "").lower() + "/" + qualname


def node_optional_fields(resources_dir: Path) -> dict[str, dict[str, tuple[bool, bool]]]:
    """``{"checkout/Session.CustomText": {field: (may_be_absent, may_be_null)}}``."""
    out: dict[str, dict[str, tuple[bool, bool]]] = {}
    for path in sorted(resources_dir.rglob("*.d.ts")):
        package = "/".join(path.relative_to(resources_dir).parts[:-1])
        stack: list[tuple[str, str]] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("*", "/*", "//", "import ")):
                continue
            if pending:
                pending += " " + line
                if pending.count("{") <= pending.count("}") and pending.endswith(";"):
                    pending = ""
                continue
            scope = _TS_SCOPE.match(line)
            if scope:
                stack.append((scope.group(1), scope.group(2)))
                continue
            field = _TS_FIELD.match(line)
            if field and stack and stack[-1][0] == "interface":
                names = [name for kind, name in stack if kind in ("namespace", "interface")]
                key = _ts_key(package, ".".join(names))
                text = field.group(3)
                out.setdefault(key, {})[field.group(1)] = (field.group(2) == "?", "| null" in text)
                if not text.endswith(";") or text.count("{") > text.count("}"):
                    pending = text
                continue
            if line.endswith("{"):
                stack.append(("block", ""))
            for _ in range(line.count("}") - line.count("{") + (1 if line.endswith("{") else 0)):
                if stack:
                    stack.pop()
    # ``Event`` is a union of one interface per type over ``EventBase``, which has the fields.
    out.setdefault("/Event", {}).update(out.get("/EventBase", {}))
    return out


def _apply_node_types(deriver: "_Deriver", node_fields: dict[str, dict[str, tuple[bool, bool]]]) -> int:
    matched = 0
    for cls, name in deriver.names.items():
        entry = deriver.types.get(name)
        if not entry or "fields" not in entry:
            continue
        package = cls.__module__.removeprefix("stripe").strip(".").rsplit(".", 1)[0]
        package = "" if package.startswith("_") else package
        declared = node_fields.get(_ts_key(package, cls.__qualname__))
        if declared is None:
            continue
        matched += 1
        absent = sorted(f for f in entry["fields"] if declared.get(f, (False, True))[0])
        never_null = sorted(
            f for f in entry["fields"] if f in declared and declared[f][0] and not declared[f][1]
        )
        entry["absent"] = absent
        if never_null:
            entry["never_null"] = never_null
    return matched


def derive(node_dir: Path | None = None) -> dict[str, Any]:
    import stripe

    deriver = _Deriver()
    operations = deriver.operations()
    for object_name in list(deriver.resources):
        module, cls_name = _object_class(object_name)
        deriver.resource(getattr(importlib.import_module(module), cls_name))
    data: dict[str, Any] = {
        "sdk_version": stripe.VERSION,
        "api_version": stripe.api_version,
        "generated_by": "scripts/stripe-sim-schema",
    }
    if node_dir is not None:
        package = json.loads((node_dir / "package.json").read_text())
        node_api = re.search(r"ApiVersion = '([^']+)'", (node_dir / "cjs" / "apiVersion.js").read_text())
        if node_api is None or node_api.group(1) != stripe.api_version:
            raise SystemExit(f"stripe-node {package['version']} is not for API version {stripe.api_version}")
        matched = _apply_node_types(deriver, node_optional_fields(node_dir / "esm" / "resources"))
        data["node_types_version"] = package["version"]
        data["node_types_matched"] = matched
    data.update(
        operations=operations,
        objects=dict(sorted(deriver.resources.items())),
        types=dict(sorted(deriver.types.items())),
    )
    return data


def _object_class(object_name: str) -> tuple[str, str]:
    from stripe._object_classes import OBJECT_CLASSES

    return OBJECT_CLASSES[object_name]


def main() -> None:
    node_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    data = derive(node_dir)
    DATA_FILE.parent.mkdir(exist_ok=True)
    # One operation or type a line: a regenerated file diffs readably.
    lines = [json.dumps({k: v for k, v in data.items() if k not in ("operations", "types", "objects")})[:-1]]
    lines.append(', "objects": ' + json.dumps(data["objects"]))
    lines.append(', "operations": [')
    lines.append(",\n".join(json.dumps(op) for op in data["operations"]))
    lines.append('], "types": {')
    lines.append(",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in data["types"].items()))
    lines.append("}}")
    DATA_FILE.write_text("\n".join(lines) + "\n")
    print(
        f"{DATA_FILE.name}: stripe {data['sdk_version']} ({data['api_version']}), "
        f"{len(data['operations'])} operations, {len(data['types'])} types"
    )


if __name__ == "__main__":
    main()
