import pytest
from django.urls import reverse

from common.errors import ServiceError
from teams import services
from teams.models import AuditEvent, Membership, Organization, Role, User

pytestmark = pytest.mark.django_db


def test_it_creates_a_personal_organization_for_each_new_user():
    user = services.user_create(email="Dana@Example.com", password="s3cret-pass-99", name="Dana")
    assert user.email == "dana@example.com"
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal
    assert membership.organization.name == "Dana's workspace"


def test_it_refuses_a_second_account_for_the_same_email():
    services.user_create(email="dana@example.com", password="s3cret-pass-99")
    with pytest.raises(ServiceError) as error:
        services.user_create(email="DANA@example.com", password="s3cret-pass-99")
    assert error.value.code == "email_taken"
    assert User.objects.count() == 1


def test_it_signs_up_logs_in_and_lands_on_the_personal_workspace(client):
    response = client.post(
        reverse("signup"),
        {"name": "Erin", "email": "erin@example.com", "password": "a-long-enough-pass"},
    )
    assert response.status_code == 302
    response = client.get(response.url, follow=True)
    org = Organization.objects.get(memberships__user__email="erin@example.com")
    assert response.redirect_chain[-1][0] == f"/o/{org.slug}/"
    assert b"Erin&#x27;s workspace" in response.content


def test_it_rejects_a_weak_password_on_signup(client):
    response = client.post(reverse("signup"), {"email": "erin@example.com", "password": "123"})
    assert response.status_code == 200
    assert b"too short" in response.content
    assert not User.objects.exists()


def test_it_logs_in_with_email_and_password(client, owner):
    response = client.post(reverse("login"), {"username": owner.email, "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_it_sends_a_password_reset_link(client, owner, mailoutbox):
    client.post(reverse("password_reset"), {"email": owner.email})
    assert len(mailoutbox) == 1
    assert "/password-reset/" in mailoutbox[0].body


def test_it_only_follows_local_next_urls_after_signup(client):
    response = client.post(
        reverse("signup") + "?next=https://evil.example/",
        {"email": "erin@example.com", "password": "a-long-enough-pass"},
    )
    assert response.url == reverse("home")


def test_it_creates_an_organization_with_a_unique_slug(client_for, owner, org):
    client = client_for(owner)
    response = client.post(reverse("organization_create"), {"name": "Acme"})
    new = Organization.objects.exclude(pk=org.pk).get(name="Acme", memberships__user=owner)
    assert new.slug == "acme-2"
    assert response.url == reverse("members", args=[new.slug])
    assert AuditEvent.objects.filter(organization=new, action="organization.created").exists()
