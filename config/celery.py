import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Billing keeps its tasks beside their domain; the worker loads them all.
app.autodiscover_tasks(["billing.metering", "billing.seats", "billing.webhooks"])
app.autodiscover_tasks(["billing"], related_name="notifications")
