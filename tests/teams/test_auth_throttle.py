"""Sign-in, sign-up and password reset are throttled per account and per address."""

import pytest
from django.core import mail
from django.urls import reverse

from teams.models import User
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-ins for this account. Try again in 15 minutes."


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


def _login(client, email, password, address="203.0.113.7"):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=address)


def test_25_wrong_passwords_lock_the_account_even_for_the_right_one(client, alice):
    answers = [_login(client, alice.email, f"wrong-{n}").status_code for n in range(25)]
    assert answers == [200] * 10 + [429] * 15
    response = _login(client, alice.email, PASSWORD)
    assert response.status_code == 429
    assert LOCKED in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lock_is_per_account(client, alice):
    UserFactory(email="bob@example.com")
    for n in range(10):
        _login(client, alice.email, f"wrong-{n}")
    response = _login(client, "bob@example.com", PASSWORD)
    assert response.status_code == 302 and client.session["_auth_user_id"]


def test_one_address_guessing_many_accounts_is_locked_out(client, settings):
    settings.AUTH_THROTTLES = {**settings.AUTH_THROTTLES, "login": (10, 30, 900)}
    UserFactory(email="carol@example.com")
    for n in range(30):
        _login(client, f"user{n}@example.com", "guess")
    response = _login(client, "carol@example.com", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins for your network address." in response.content.decode()
    # Another address is not held back.
    assert _login(client, "carol@example.com", PASSWORD, address="198.51.100.1").status_code == 302


def test_right_passwords_are_not_counted(client, alice):
    for _ in range(15):
        assert _login(client, alice.email, PASSWORD).status_code == 302
        client.logout()


def test_the_admin_sign_in_is_throttled_too(client, alice):
    alice.is_staff = True
    alice.save()
    url = reverse("admin:login")
    for n in range(10):
        client.post(url, {"username": alice.email, "password": f"x{n}"}, REMOTE_ADDR="203.0.113.7")
    response = client.post(url, {"username": alice.email, "password": PASSWORD}, REMOTE_ADDR="203.0.113.7")
    assert LOCKED in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_without_redis_a_closed_limiter_refuses_sign_in(client, alice, settings):
    settings.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"
    settings.RATE_LIMIT_FAIL_OPEN = False
    response = _login(client, alice.email, PASSWORD)
    assert "cannot be checked right now" in response.content.decode()
    settings.RATE_LIMIT_FAIL_OPEN = True
    assert _login(client, alice.email, PASSWORD).status_code == 302


def test_password_reset_is_throttled_per_account_without_telling_who_exists(client, alice):
    url = reverse("password_reset")
    for _ in range(3):
        assert client.post(url, {"email": alice.email}).status_code == 302
    assert len(mail.outbox) == 3
    response = client.post(url, {"email": alice.email})
    assert response.status_code == 429
    assert "Too many password reset requests for this account." in response.content.decode()
    assert len(mail.outbox) == 3
    # An address without an account is counted and answered the same way.
    for _ in range(3):
        client.post(url, {"email": "nobody@example.com"})
    assert client.post(url, {"email": "nobody@example.com"}).status_code == 429


def test_sign_up_is_throttled_per_address(client, settings):
    settings.AUTH_THROTTLES = {**settings.AUTH_THROTTLES, "signup": (5, 3, 3600)}
    for n in range(3):
        data = {"email": f"new{n}@example.com", "password": "a long passphrase 42"}
        assert client.post(reverse("signup"), data, REMOTE_ADDR="203.0.113.9").status_code == 302
        client.logout()
    data = {"email": "new9@example.com", "password": "a long passphrase 42"}
    response = client.post(reverse("signup"), data, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 429
    assert "Too many sign-up attempts for your network address." in response.content.decode()
    assert not User.objects.filter(email="new9@example.com").exists()
