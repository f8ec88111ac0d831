import pytest
from django.urls import reverse
from django.utils import timezone

from teams import api_keys, keycache, services
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
    # Noted in Redis by the request, written by the periodic flush.
    assert api_keys.api_key_use_flush() == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_cached_key_costs_no_query_and_no_write(org, owner, django_assert_num_queries):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    with django_assert_num_queries(1):  # the first lookup reads the key
        assert api_keys.api_key_authenticate(secret).pk == key.pk
    with django_assert_num_queries(0):
        for _ in range(20):
            found = api_keys.api_key_authenticate(secret)
    assert found.pk == key.pk and found.organization == org
    with django_assert_num_queries(1):  # every use of the minute in one statement
        assert api_keys.api_key_use_flush() == 1
    with django_assert_num_queries(0):
        assert api_keys.api_key_use_flush() == 0


def test_another_process_shares_the_cache_and_its_generation(org, owner, django_assert_num_queries):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    api_keys.api_key_authenticate(secret)
    keycache.forget_local()  # as a second worker would start: nothing in its own memory
    with django_assert_num_queries(0):
        assert api_keys.api_key_authenticate(secret).pk == key.pk
    api_keys.api_key_revoke(key=key, actor=owner)
    keycache.forget_local()
    assert api_keys.api_key_authenticate(secret) is None


def test_a_revoked_key_is_refused_on_the_very_next_request_with_the_cache_on(api_client, org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for _ in range(3):
        assert api_client.get("/api/v1/credits/balance").status_code == 200
    assert keycache.authenticate(secret) is not None  # cached, in this process and in Redis
    api_keys.api_key_revoke(key=key, actor=owner)
    response = api_client.get("/api/v1/credits/balance")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_generation_lost_by_redis_never_makes_an_older_entry_current_again(org, owner):
    # Redis restarted without persistence, or evicted the counter: it starts again from nothing,
    # and an entry cached before a revocation must not match the generation it starts from.
    redis = keycache._client()
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    redis.delete(keycache.GENERATION_KEY)
    assert api_keys.api_key_authenticate(secret) is not None
    api_keys.api_key_revoke(key=key, actor=owner)
    redis.delete(keycache.GENERATION_KEY)
    keycache.forget_local()  # a process started since
    assert api_keys.api_key_authenticate(secret) is None


@pytest.mark.django_db(transaction=True)
def test_a_revocation_committed_elsewhere_is_seen_by_a_warm_cache(org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    assert api_keys.api_key_authenticate(secret) is not None
    # Another process revokes: this one's memory and Redis only learn it from the generation.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert api_keys.api_key_authenticate(secret) is not None  # no one said: still cached
    keycache.invalidate()
    assert api_keys.api_key_authenticate(secret) is None


def test_a_renamed_organization_is_seen_through_a_cached_key(org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    api_keys.api_key_authenticate(secret)
    org.name = "Acme Renamed"
    org.save(update_fields=["name"])
    assert api_keys.api_key_authenticate(secret).organization.name == "Acme Renamed"


def test_last_use_never_moves_backwards(org, owner):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name="ci")
    later = timezone.now() + timezone.timedelta(hours=1)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=later)
    api_keys.api_key_authenticate(secret)
    assert api_keys.api_key_use_flush() == 0
    key.refresh_from_db()
    assert key.last_used_at == later


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
