import pytest
from django.urls import reverse
from django.utils import timezone

from teams import api_keys, services
from teams.models import ApiKey, AuditEvent

pytestmark = pytest.mark.django_db


def test_it_shows_the_secret_once_and_stores_only_its_digest(client_for, org, owner):
    client = client_for(owner)
    response = client.post(reverse("api_keys", args=[org.slug]), {"name": "server", "scopes": ["read"]})
    key = ApiKey.objects.get()
    secret = response.context["secret"]
    assert secret.startswith("tly_")
    assert secret.encode() in response.content
    assert key.digest == ApiKey.digest_of(secret)
    assert secret not in {key.prefix, key.digest, key.name}
    assert secret.encode() not in client.get(reverse("api_keys", args=[org.slug])).content
    assert AuditEvent.objects.filter(action="api_key.created").exists()


def test_a_key_authenticates_the_api_and_records_last_use(api_client, org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api_client.get("/api/v1/projects/").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(org, owner, django_assert_num_queries):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    api_keys.api_key_authenticate(secret)
    with django_assert_num_queries(1):
        assert api_keys.api_key_authenticate(secret).pk == key.pk


def test_a_revoked_key_is_refused(api_client, client_for, org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    client_for(owner).post(reverse("api_key_revoke", args=[org.slug, key.code]))
    key.refresh_from_db()
    assert key.revoked_at is not None
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api_client.get("/api/v1/projects/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert AuditEvent.objects.filter(action="api_key.revoked").exists()


def test_an_unknown_key_is_refused(api_client, org):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer tly_not-a-real-key")
    assert api_client.get("/api/v1/projects/").status_code == 401


def test_a_member_cannot_manage_keys(client_for, org, owner, member):
    key, _ = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    client = client_for(member)
    assert client.get(reverse("api_keys", args=[org.slug])).status_code == 403
    assert client.post(reverse("api_key_revoke", args=[org.slug, key.code])).status_code == 403
    assert ApiKey.objects.get().revoked_at is None


def test_revoking_twice_is_refused(org, owner):
    key, _ = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    with pytest.raises(services.ServiceError):
        api_keys.api_key_revoke(key=key, actor=owner)
