from django.urls import path

from billing import views
from billing.seats import views as seat_views
from billing.subscriptions import views as addon_views

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("pricing/seats/", views.pricing_seats, name="pricing_seats"),
    path("o/<slug:org_slug>/billing/", views.billing, name="billing"),
    path("o/<slug:org_slug>/billing/upcoming/", views.billing_upcoming, name="billing_upcoming"),
    path("o/<slug:org_slug>/billing/invoices/", views.invoices, name="billing_invoices"),
    path("o/<slug:org_slug>/billing/notices/", views.notices, name="billing_notices"),
    path("o/<slug:org_slug>/billing/checkout/", views.checkout, name="billing_checkout"),
    path("o/<slug:org_slug>/billing/success/", views.checkout_success, name="billing_success"),
    path("o/<slug:org_slug>/billing/change/", views.change_plan, name="billing_change"),
    path("o/<slug:org_slug>/billing/cancel/", views.cancel, name="billing_cancel"),
    path("o/<slug:org_slug>/billing/resume/", views.resume, name="billing_resume"),
    path("o/<slug:org_slug>/billing/refund/", views.refund, name="billing_refund"),
    path("o/<slug:org_slug>/billing/portal/", views.portal, name="billing_portal"),
    path("o/<slug:org_slug>/billing/details/", views.details, name="billing_details"),
    path("o/<slug:org_slug>/billing/seats/", seat_views.seat_preview, name="billing_seat_preview"),
    path("o/<slug:org_slug>/billing/seats/prepaid/", seat_views.seats_prepaid, name="billing_seats_prepaid"),
    path("o/<slug:org_slug>/billing/addons/<slug:key>/buy/", addon_views.addon_buy, name="billing_addon_buy"),
    path("o/<slug:org_slug>/billing/addons/<slug:key>/add/", addon_views.addon_add, name="billing_addon_add"),
    path(
        "o/<slug:org_slug>/billing/addons/bought/<uuid:code>/",
        addon_views.addon_bought,
        name="billing_addon_bought",
    ),
    path(
        "o/<slug:org_slug>/billing/addons/<uuid:code>/remove/",
        addon_views.addon_remove,
        name="billing_addon_remove",
    ),
]
