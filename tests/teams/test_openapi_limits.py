"""The schema documents the rate-limit headers, the 429 and 403 answers and each operation's
API key scopes."""

import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db


def _operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield schema, path, method, operation


def test_every_operation_documents_limits_and_scopes():
    seen, schema = 0, None
    for schema, path, method, operation in _operations():  # noqa: B007 - the last one is used
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/schema"):
            continue
        seen += 1
        responses = operation["responses"]
        assert {"429", "403"} <= set(responses), (method, path)
        assert "Retry-After" in responses["429"]["headers"]
        for code, response in responses.items():
            assert "RateLimit-Remaining" in response["headers"], (method, path, code)
        assert operation["x-required-scopes"], (method, path)
        assert "API key scope" in operation["description"]
    assert seen >= 20
    assert set(schema["components"]["headers"]) >= {"RateLimit-Limit", "RateLimit-Reset", "Retry-After"}


def test_the_consume_operation_names_credits_write():
    ops = {(p, m): o for _, p, m, o in _operations()}
    consume = next(o for (p, m), o in ops.items() if p.startswith("/api/v1/credits/consume") and m == "post")
    assert consume["x-required-scopes"] == ["credits:write"]
