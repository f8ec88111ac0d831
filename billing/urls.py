from django.urls import path

from billing import views

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("pricing/seats/", views.pricing_seats, name="pricing_seats"),
]
