from django.urls import path

from credits import views

urlpatterns = [
    path("o/<slug:org_slug>/credits/", views.credits_page, name="credits"),
    path("o/<slug:org_slug>/credits/widget/", views.credits_widget, name="credits_widget"),
    path("o/<slug:org_slug>/credits/settings/", views.credits_settings, name="credits_settings"),
    path("o/<slug:org_slug>/credits/buy/", views.credits_buy, name="credits_buy"),
    path("o/<slug:org_slug>/credits/purchases/<uuid:code>/", views.credits_purchase, name="credits_purchase"),
    path("o/<slug:org_slug>/credits/recharges/<uuid:code>/", views.credits_recharge, name="credits_recharge"),
    path("o/<slug:org_slug>/credits/card/", views.credits_card, name="credits_card"),
    path("o/<slug:org_slug>/credits/history.csv", views.credits_export, name="credits_export"),
]
