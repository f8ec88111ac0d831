from django.urls import path

from billing.metering import views

urlpatterns = [
    path("o/<slug:org_slug>/usage/", views.usage_page, name="usage"),
    path("o/<slug:org_slug>/usage/events.csv", views.usage_export, name="usage_export"),
]
