from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from billing.webhooks.views import stripe_webhook

urlpatterns = [
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", lambda request: redirect(static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # The split view loads its script from a URL, not inline, so a strict CSP allows it.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api_schema", template_name="api_docs.html"),
        name="api_docs",
    ),
    path("api/v1/credits/", include("credits.api_urls")),
    path("api/v1/", include("projects.api_urls")),
    path("api/v1/", include("billing.api_urls")),
    # Ours first: it checks size and signature before dj-stripe's view stores anything.
    path("stripe/webhook/<uuid:uuid>/", stripe_webhook, name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("", include("teams.urls")),
    path("", include("billing.urls")),
    path("", include("billing.metering.urls")),
    path("", include("credits.urls")),
    path("", include("projects.urls")),
]
