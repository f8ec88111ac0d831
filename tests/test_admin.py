"""Every model of Tally's apps is in the admin, and every admin list page renders."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

OURS = {"teams", "billing", "credits", "projects"}


def test_every_model_is_registered_or_edited_inline():
    inline = {i.model for a in admin.site._registry.values() for i in a.inlines}
    missing = [
        f"{model._meta.app_label}.{model.__name__}"
        for app in OURS
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry and model not in inline
    ]
    assert missing == []


def test_every_changelist_renders_for_staff(client, org, owner):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    for model in admin.site._registry:
        if model._meta.app_label not in OURS:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, url
        assert client.get(url, {"q": "acme"}).status_code == 200, url
