from django.urls import path

from billing import views_usage

urlpatterns = [
    path("o/<slug:org_slug>/usage/", views_usage.usage_page, name="usage"),
    path("o/<slug:org_slug>/usage/events.csv", views_usage.usage_export, name="usage_export"),
]
