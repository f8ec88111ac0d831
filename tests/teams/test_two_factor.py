"""Two-factor sign-in: the RFC's codes, the sealed secret, enrolment, the sign-in's second step,
recovery codes, turning it off, and the admin's sign-in."""

import base64
import time

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.urls import reverse

from teams import totp, twofactor
from teams.models import RecoveryCode, TwoFactor
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    ("when", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
    ids=["t59", "t1111111109", "t1111111111", "t1234567890", "t2000000000", "t20000000000"],
)
def test_it_computes_the_codes_of_rfc_6238(when, code):
    assert totp.hotp(RFC_SECRET, totp.step_at(when), digits=8) == code


def test_it_accepts_the_neighbouring_steps_only():
    secret = totp.new_secret()
    now = 1_800_000_000.0
    for offset, expected in [(-30, True), (0, True), (30, True), (-60, False), (60, False)]:
        code = totp.hotp(secret, totp.step_at(now + offset))
        assert (totp.matching_step(secret, code, when=now) is not None) is expected, offset
    assert totp.matching_step(secret, "12345", when=now) is None
    assert totp.matching_step(secret, "abcdef", when=now) is None


def test_it_shows_the_secret_in_groups_of_four_and_as_an_otpauth_uri():
    secret = base64.b32decode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    assert totp.grouped(secret) == "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"
    assert totp.provisioning_uri(secret, "alice@example.com") == (
        "otpauth://totp/Tally%3Aalice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        "&issuer=Tally&algorithm=SHA1&digits=6&period=30"
    )


def _code(user, when=None) -> str:
    return totp.hotp(TwoFactor.objects.get(user=user).secret, totp.step_at(when))


def enrolled(user) -> list[str]:
    twofactor.two_factor_start(user=user)
    # A step in the past, so that the codes of now are still unused.
    return twofactor.two_factor_confirm(user=user, code=_code(user, time.time() - 30), when=time.time() - 30)


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


def test_the_secret_is_not_in_the_database(alice):
    twofactor.two_factor_start(user=alice)
    secret = TwoFactor.objects.get(user=alice).secret
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_sealed FROM teams_twofactor WHERE user_id = %s", [alice.pk])
        (stored,) = cursor.fetchone()
    assert len(secret) == 20
    for form in (totp.b32(secret), totp.b32(secret).lower(), secret.hex(), base64.b64encode(secret).decode()):
        assert form not in stored
    assert Fernet(totp.settings.TOTP_ENCRYPTION_KEY).decrypt(stored.encode()) == secret


def test_another_key_cannot_read_the_secret(alice, settings):
    twofactor.two_factor_start(user=alice)
    settings.TOTP_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match="TOTP_ENCRYPTION_KEY"):
        TwoFactor.objects.get(user=alice).secret  # noqa: B018


def test_a_recovery_code_still_signs_in_when_the_key_changed(alice, settings):
    codes = enrolled(alice)
    settings.TOTP_ENCRYPTION_KEY = Fernet.generate_key().decode()
    assert twofactor.two_factor_verify(user=alice, code=codes[0]) == "recovery"


def test_enrolment_shows_the_secret_then_ten_recovery_codes_once(client, alice):
    client.force_login(alice)
    page = client.get(reverse("account_two_factor")).content.decode()
    assert "Set up two-factor sign-in" in page
    client.post(reverse("two_factor_start"))
    page = client.get(reverse("account_two_factor")).content.decode()
    secret = TwoFactor.objects.get(user=alice).secret
    assert totp.grouped(secret) in page
    assert totp.provisioning_uri(secret, alice.email).replace("&", "&amp;") in page

    wrong = client.post(reverse("two_factor_confirm"), {"code": "000000"})
    assert wrong.status_code == 400 and not TwoFactor.objects.get(user=alice).is_on

    response = client.post(reverse("two_factor_confirm"), {"code": _code(alice)})
    assert response.status_code == 200
    codes = response.context["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(code in response.content.decode() for code in codes)
    stored = set(RecoveryCode.objects.values_list("digest", flat=True))
    assert stored == {RecoveryCode.digest_of(c) for c in codes}
    assert not any(RecoveryCode.normalize(c) in d for c in codes for d in stored)
    # Never shown again, nor the secret.
    page = client.get(reverse("account_two_factor")).content.decode()
    assert not any(code in page for code in codes)
    assert totp.grouped(secret) not in page and "10 recovery codes left" in page


def test_starting_again_replaces_an_unconfirmed_secret_but_not_a_confirmed_one(alice):
    first = twofactor.two_factor_start(user=alice)
    second = twofactor.two_factor_start(user=alice)
    assert not TwoFactor.objects.filter(pk=first.pk).exists() and second.pk
    enrolled(alice)
    with pytest.raises(twofactor.ServiceError, match="already on"):
        twofactor.two_factor_start(user=alice)


def test_a_code_is_good_once_and_not_before_the_last_one(alice):
    enrolled(alice)
    code = _code(alice)
    assert twofactor.two_factor_verify(user=alice, code=code) == "totp"
    assert twofactor.two_factor_verify(user=alice, code=code) == ""
    earlier = _code(alice, time.time() - 30)
    assert twofactor.two_factor_verify(user=alice, code=earlier) == ""


def test_a_recovery_code_is_good_once(alice):
    codes = enrolled(alice)
    assert twofactor.two_factor_verify(user=alice, code=codes[3].upper().replace("-", " ")) == "recovery"
    assert twofactor.two_factor_verify(user=alice, code=codes[3]) == ""
    assert twofactor.recovery_codes_left(alice) == 9
    assert twofactor.two_factor_verify(user=alice, code="aaaaa-aaaaa") == ""


def test_an_unconfirmed_enrolment_asks_for_no_code(client, alice):
    twofactor.two_factor_start(user=alice)
    response = client.post(reverse("login"), {"username": alice.email, "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(alice.pk)


def _password(client, user, address="203.0.113.7", next_url=""):
    data = {"username": user.email, "password": PASSWORD, "next": next_url}
    return client.post(reverse("login"), data, REMOTE_ADDR=address)


def _second(client, code, address="203.0.113.7"):
    return client.post(reverse("login_two_factor"), {"code": code}, REMOTE_ADDR=address)


def test_sign_in_asks_for_the_code_after_the_password(client, alice):
    enrolled(alice)
    response = _password(client, alice, next_url="/orgs/new/")
    assert response.status_code == 302 and response["Location"] == reverse("login_two_factor")
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("home")).status_code == 302  # still signed out
    assert _second(client, "000000").status_code == 400
    assert "_auth_user_id" not in client.session
    response = _second(client, _code(alice))
    assert response.status_code == 302 and response["Location"] == "/orgs/new/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_a_code_used_to_sign_in_cannot_sign_in_again(client, alice):
    enrolled(alice)
    code = _code(alice)
    _password(client, alice)
    assert _second(client, code).status_code == 302
    client.logout()
    _password(client, alice)
    assert _second(client, code).status_code == 400
    assert "_auth_user_id" not in client.session


def test_a_recovery_code_signs_in_once(client, alice):
    codes = enrolled(alice)
    _password(client, alice)
    assert _second(client, codes[0]).status_code == 302
    client.logout()
    _password(client, alice)
    assert _second(client, codes[0]).status_code == 400


def test_the_second_step_needs_the_password_first_and_times_out(client, alice, settings):
    enrolled(alice)
    assert _second(client, _code(alice)).status_code == 302
    assert "_auth_user_id" not in client.session
    _password(client, alice)
    settings.TWO_FACTOR_PENDING_SECONDS = -1
    response = _second(client, _code(alice))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session


def test_wrong_codes_lock_the_second_step_even_for_the_right_code(client, alice):
    enrolled(alice)
    _password(client, alice)
    answers = [_second(client, f"{n:06d}").status_code for n in range(7)]
    assert answers == [400] * 5 + [429] * 2
    response = _second(client, _code(alice))
    assert response.status_code == 429
    assert "Too many wrong two-factor codes for this account" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # The lock is the account's, from any address.
    assert _second(client, _code(alice), address="198.51.100.1").status_code == 429


def test_turning_it_off_needs_a_code_or_the_password(client, alice):
    enrolled(alice)
    client.force_login(alice)
    url = reverse("two_factor_disable")
    assert client.post(url, {"code": "000000"}).status_code == 400
    assert client.post(url, {"password": "wrong"}).status_code == 400
    assert client.post(url, {}).status_code == 400
    assert TwoFactor.objects.get(user=alice).is_on
    assert client.post(url, {"password": PASSWORD}).status_code == 302
    assert not TwoFactor.objects.filter(user=alice).exists() and not RecoveryCode.objects.exists()

    enrolled(alice)
    assert client.post(url, {"code": _code(alice)}).status_code == 302
    assert not TwoFactor.objects.filter(user=alice).exists()


def test_the_account_pages_need_a_sign_in(client):
    for name in ("account_two_factor", "two_factor_required"):
        assert client.get(reverse(name))["Location"].startswith("/login/")
    for name in ("two_factor_start", "two_factor_confirm", "two_factor_disable"):
        assert client.post(reverse(name))["Location"].startswith("/login/")


def test_the_admin_sign_in_refuses_an_account_with_two_factor(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    enrolled(alice)
    response = client.post(reverse("admin:login"), {"username": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "log in on the site&#x27;s sign-in page" in response.content.decode()
    assert "_auth_user_id" not in client.session
