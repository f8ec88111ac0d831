from django.urls import re_path

from credits import api

UUID = r"(?P<code>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"

# The trailing slash is optional: these are called by scripts as often as by browsers.
urlpatterns = [
    re_path(r"^balance/?$", api.BalanceApi.as_view(), name="api_credits_balance"),
    re_path(r"^consume/?$", api.ConsumeApi.as_view(), name="api_credits_consume"),
    re_path(r"^reservations/?$", api.ReservationListApi.as_view(), name="api_credits_reservations"),
    re_path(
        rf"^reservations/{UUID}/confirm/?$",
        api.ReservationConfirmApi.as_view(),
        name="api_credits_reservation_confirm",
    ),
    re_path(
        rf"^reservations/{UUID}/cancel/?$",
        api.ReservationCancelApi.as_view(),
        name="api_credits_reservation_cancel",
    ),
    re_path(r"^transactions/?$", api.TransactionListApi.as_view(), name="api_credits_transactions"),
    re_path(r"^packages/?$", api.PackageListApi.as_view(), name="api_credits_packages"),
    re_path(r"^purchase/?$", api.PurchaseApi.as_view(), name="api_credits_purchase"),
    re_path(r"^estimate/?$", api.EstimateApi.as_view(), name="api_credits_estimate"),
    re_path(r"^adjustments/?$", api.AdjustmentApi.as_view(), name="api_credits_adjustments"),
]
