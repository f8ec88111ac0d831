from django.urls import re_path

from billing import api

# The trailing slash is optional: clients write these paths both ways.
urlpatterns = [
    re_path(r"^entitlements/?$", api.EntitlementListApi.as_view(), name="api_entitlements"),
    re_path(r"^entitlements/check/?$", api.EntitlementCheckApi.as_view(), name="api_entitlement_check"),
]
