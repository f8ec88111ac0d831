"""Error pages inside the app shell, saying why."""

from django.template import engines
from django.urls import reverse


def test_it_answers_a_member_on_an_admin_page_with_the_reason(client_for, org, member):
    response = client_for(member).get(reverse("api_keys", args=[org.slug]))
    assert response.status_code == 403
    body = response.content.decode()
    assert "This needs the admin role" in body
    assert 'id="primary-nav"' in body and "You are member of Acme" in body
    # The navigation hides what the role cannot open.
    assert reverse("api_keys", args=[org.slug]) not in body
    assert reverse("organization_settings", args=[org.slug]) not in body


def test_an_admin_sees_the_links_a_member_does_not(client_for, org, admin):
    body = client_for(admin).get(reverse("dashboard", args=[org.slug])).content.decode()
    assert reverse("api_keys", args=[org.slug]) in body
    assert reverse("organization_settings", args=[org.slug]) in body


def test_an_outsider_gets_the_styled_404(client_for, org, outsider):
    response = client_for(outsider).get(reverse("dashboard", args=[org.slug]))
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_the_500_page_renders_without_a_request_or_the_database():
    # Django's server_error renders it with an empty context: no user, no context processors.
    # Without the db fixture, any query here would fail the test.
    html = engines["django"].get_template("500.html").render({})
    assert "Something went wrong on our side" in html


def test_the_favicon_is_linked_and_served(client, db):
    assert 'rel="icon"' in client.get(reverse("landing")).content.decode()
    assert client.get("/favicon.ico").status_code == 301
