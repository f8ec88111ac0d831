from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from billing.views_webhook import stripe_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/v1/credits/", include("credits.api_urls")),
    path("api/v1/", include("projects.api_urls")),
    path("api/v1/", include("billing.api_urls")),
    # Ours first: it checks size and signature before dj-stripe's view stores anything.
    path("stripe/webhook/<uuid:uuid>/", stripe_webhook, name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("", include("teams.urls")),
    path("", include("billing.urls")),
    path("", include("billing.urls_usage")),
    path("", include("credits.urls")),
    path("", include("projects.urls")),
]
