"""The API reference at /api/docs/: Swagger UI from our own static files, under the pages' CSP."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_api_reference_renders_the_schema(new_page, live_server):
    page = new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Tally API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("text=/api/v1/credits/consume/")
    assert all(url.startswith(live_server.url) for url in requested), requested
