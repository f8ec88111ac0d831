import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Tasks queued with delay_on_commit go through the outbox (teams/outbox.py).
app = Celery("tally", task_cls="teams.outbox:OutboxTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Billing keeps its tasks beside their domain; the worker loads them all.
app.autodiscover_tasks(["billing.catalog", "billing.metering", "billing.seats", "billing.webhooks"])
app.autodiscover_tasks(["billing"], related_name="notifications")
