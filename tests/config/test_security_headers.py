"""Security headers, pages that a strict Content-Security-Policy lets run, and a clean
`check --deploy` with the production recipe of the README."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from billing.models import Plan
from teams import api_keys
from tests.config.test_settings import ROOT, manage
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


class _Inline(HTMLParser):
    """Collects whatever a CSP without 'unsafe-inline' would block."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in names
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name == "style":
                self.found.append(f"<{tag} style={value!r}>")
            if name in ("href", "action", "src") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"inline script {data.strip()[:40]!r}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def _inline_of(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.found


def test_the_detector_finds_what_it_should():
    html = '<script>x()</script><a onclick="y()" style="color:red" href="javascript:z()">a</a><style></style>'
    assert len(_inline_of(html)) == 5
    assert _inline_of('<script src="/static/js/tally.js" defer></script>') == []


def test_the_main_pages_have_no_inline_script_handler_or_style(client_for, org, owner, member):
    project = ProjectFactory(organization=org, name="Site")
    api_keys.api_key_create(organization=org, actor=owner, name="server")
    anonymous = Client()
    for url in [
        reverse("landing"),
        reverse("login"),
        reverse("signup"),
        reverse("password_reset"),
        reverse("pricing"),
    ]:
        response = anonymous.get(url)
        assert response.status_code == 200, url
        assert _inline_of(response.content.decode()) == [], url
    client = client_for(owner)
    slug = org.slug
    pages = [
        reverse("home"),
        reverse("dashboard", args=[slug]),
        reverse("project_list", args=[slug]),
        reverse("project_create", args=[slug]),
        reverse("project_detail", args=[slug, project.code]),
        reverse("usage", args=[slug]),
        reverse("credits", args=[slug]),
        reverse("members", args=[slug]),
        reverse("api_keys", args=[slug]),
        reverse("billing", args=[slug]),
        reverse("organization_settings", args=[slug]),
        reverse("organization_create"),
        reverse("pricing"),
    ]
    for url in pages:
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert _inline_of(html) == [], url
        assert "text/html" in response["Content-Type"]


def test_no_template_has_an_inline_script_handler_or_style():
    # Every template, including fragments and states the page test does not reach.
    for path in (ROOT / "templates").rglob("*.html"):
        if "email" in path.parts:
            continue  # mail is not subject to the site's CSP
        text = path.read_text()
        assert not re.search(r"\son[a-z]+=", text), path
        assert not re.search(r'\sstyle="', text), path
        assert not re.search(r"<script(?![^>]*\ssrc=)", text), path
        assert "<style" not in text, path


def test_the_admin_pages_staff_use_have_no_inline_script_handler_or_style(client):
    # Django's change list without actions writes an inline style element; ours moves it out.
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        if model._meta.app_label in ("billing", "credits", "teams", "projects"):
            urls.append(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
    urls.append(reverse("admin:billing_plan_change", args=[Plan.objects.get(key="team_monthly").pk]))
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert _inline_of(response.content.decode()) == [], url


def test_pages_carry_a_strict_content_security_policy(client):
    policy = client.get(reverse("login"))["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_htmx_is_told_not_to_inject_its_indicator_styles(client):
    html = client.get(reverse("login")).content.decode()
    assert """<meta name="htmx-config" content='{"includeIndicatorStyles": false}'>""" in html


def test_hsts_and_the_https_redirect_follow_the_settings(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    response = client.get(reverse("login"))
    assert response.status_code == 301
    assert response["Location"] == "https://testserver" + reverse("login")
    response = client.get(reverse("login"), secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_by_default_there_is_neither_hsts_nor_a_redirect(client):
    # The demo and tests run over plain http; production turns both on (README).
    response = client.get(reverse("login"))
    assert response.status_code == 200 and "Strict-Transport-Security" not in response


def test_api_json_is_never_stored_by_a_cache(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    assert api_client.get("/api/v1/credits/balance/")["Cache-Control"] == "no-store"  # a 401
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api_client.get("/api/v1/credits/balance/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def _production_recipe() -> dict[str, str]:
    """The `export` block of the README's production recipe, with its elisions filled in."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Going to production", 1)[1].split("```sh", 1)[1].split("uv sync", 1)[0]
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", block.replace("\\\n", " ")))
    fill = {
        "DJANGO_SECRET_KEY": "a-production-secret-key-of-enough-length-0123456789",
        "STRIPE_SECRET_KEY": "sk_live_" + "A1" * 12,
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + "A1" * 12,
    }
    return {k: fill.get(k, v.replace("…", "x")) for k, v in env.items()}


def test_check_deploy_with_the_production_recipe_warns_of_nothing_of_ours():
    env = _production_recipe()
    assert env["SECURE_SSL_REDIRECT"] == "true" and env["SECURE_HSTS_SECONDS"] == "31536000"
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    output = result.stdout + result.stderr
    ours = re.findall(r"\((security\.W\d+|tally\.[EW]\d+)\)|\?: \((security\.\w+)\)", output)
    assert ours == [], output
    assert "security.W" not in output and "tally." not in output, output
