import pytest
from rest_framework.test import APIClient

from teams.models import Role
from tests.factories import MembershipFactory, OrganizationFactory

PASSWORD = "correct horse battery"


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def owner(org):
    return MembershipFactory(organization=org, role=Role.OWNER, user__email="alice@example.com").user


@pytest.fixture
def admin(org):
    return MembershipFactory(organization=org, role=Role.ADMIN, user__email="adam@example.com").user


@pytest.fixture
def billing_manager(org):
    return MembershipFactory(organization=org, role=Role.BILLING, user__email="bill@example.com").user


@pytest.fixture
def member(org):
    return MembershipFactory(organization=org, role=Role.MEMBER, user__email="bob@example.com").user


@pytest.fixture
def outsider(db):
    """Charlie owns another organization and must never see Acme's data."""
    other = OrganizationFactory(name="Other", slug="other")
    return MembershipFactory(organization=other, role=Role.OWNER, user__email="charlie@example.com").user


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def api_client():
    return APIClient()
