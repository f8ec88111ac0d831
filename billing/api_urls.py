from django.urls import re_path

from billing import api
from billing.metering import api as metering_api

# The trailing slash is optional: clients write these paths both ways.
urlpatterns = [
    re_path(r"^billing/status/?$", api.BillingStatusApi.as_view(), name="api_billing_status"),
    re_path(r"^billing/checkout/?$", api.BillingCheckoutApi.as_view(), name="api_billing_checkout"),
    re_path(r"^billing/portal/?$", api.BillingPortalApi.as_view(), name="api_billing_portal"),
    re_path(r"^entitlements/?$", api.EntitlementListApi.as_view(), name="api_entitlements"),
    re_path(r"^entitlements/check/?$", api.EntitlementCheckApi.as_view(), name="api_entitlement_check"),
]

urlpatterns += [
    re_path(r"^usage/events/?$", metering_api.UsageEventsApi.as_view(), name="api_usage_events"),
    re_path(r"^usage/summary/?$", metering_api.UsageSummaryApi.as_view(), name="api_usage_summary"),
]
