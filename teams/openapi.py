"""What every API operation shares, added to the OpenAPI schema by a drf-spectacular
postprocessing hook: the `RateLimit-*` headers, the 429 and `insufficient_scope` 403 answers, and
the API key scopes each operation needs (`x-required-scopes`, and a line in its description)."""

from teams.auth import required_scopes

_METHODS = {"get", "post", "put", "patch", "delete"}
_INT = {"type": "integer", "minimum": 0}

HEADERS = {
    "RateLimit-Limit": {
        "description": "Requests a minute allowed by the limit nearest to being reached: the "
        "organization's plan (`api_rate`) or the caller's own share (`api_key_rate`).",
        "schema": _INT,
    },
    "RateLimit-Remaining": {"description": "Requests left under that limit.", "schema": _INT},
    "RateLimit-Reset": {
        "description": "Seconds until that limit has room again (a sliding one-minute window).",
        "schema": _INT,
    },
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": _INT},
}
ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
}


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _error(description: str, headers: list[str]) -> dict:
    return {
        "description": description,
        "headers": {h: _ref("headers", h) for h in headers},
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    }


def add_limits_and_scopes(result, generator, request, public):
    views = {}
    for path, _regex, method, view in generator._get_paths_and_endpoints():
        views[(path, method.lower())] = view
    components = result.setdefault("components", {})
    components.setdefault("headers", {}).update(HEADERS)
    components.setdefault("schemas", {}).setdefault("Error", ERROR)
    limit_headers = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            view = views.get((path, method))
            if method not in _METHODS or view is None or not hasattr(view, "scopes"):
                continue
            for response in operation.get("responses", {}).values():
                headers = response.setdefault("headers", {})
                for name in limit_headers:
                    headers.setdefault(name, _ref("headers", name))
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "429",
                _error("Past a rate limit (`rate_limited`).", [*limit_headers, "Retry-After"]),
            )
            refused = _error("Refused: e.g. `insufficient_scope` for an API key.", limit_headers)
            responses.setdefault("403", refused)
            scopes = sorted(required_scopes(view, method) or ())
            operation["x-required-scopes"] = scopes
            line = f"API key scope{'s' if len(scopes) > 1 else ''}: " + ", ".join(f"`{s}`" for s in scopes)
            operation["description"] = f"{operation.get('description', '')}\n\n{line}".strip()
    return result
