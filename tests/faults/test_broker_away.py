"""Broker away: tasks queued while it is down wait in the outbox and are published when it is back.

Celery publishes for real to Redis through a proxy the test takes down and brings back.
"""

import pytest
from django.db import transaction
from django.urls import reverse

from teams import metrics
from teams.models import Invitation, QueuedTask
from teams.outbox import outbox_relay
from teams.tasks import send_invitation_email

pytestmark = pytest.mark.django_db


def _invite(client, org, email):
    return client.post(reverse("invitation_create", args=[org.slug]), {"email": email, "role": "member"})


def test_a_task_queued_while_the_broker_is_down_is_sent_when_it_is_back(
    broker, client_for, org, owner, django_capture_on_commit_callbacks
):
    broker.proxy.down()
    failures = metrics.value("tally_outbox_publish_failures_total")
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client, org, "dana@example.com")
    assert response.status_code in (200, 302), response.content  # the person's action succeeded
    invitation = Invitation.objects.get(email="dana@example.com")
    row = QueuedTask.objects.get()
    assert (row.task, row.args) == (send_invitation_email.name, [invitation.pk])
    assert broker.queued() == []
    assert metrics.value("tally_outbox_publish_failures_total") == failures + 1

    assert outbox_relay() == 0  # still away: kept
    assert QueuedTask.objects.count() == 1

    broker.proxy.restore()
    assert outbox_relay() == 1
    assert broker.queued() == [{"task": send_invitation_email.name, "id": str(row.task_id)}]
    assert not QueuedTask.objects.exists()
    assert outbox_relay() == 0  # sent once


def test_with_the_broker_up_the_task_is_sent_at_commit(
    broker, org, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        send_invitation_email.delay_on_commit(123)
        assert QueuedTask.objects.count() == 1  # written with the action
    assert not QueuedTask.objects.exists()
    assert [m["task"] for m in broker.queued()] == [send_invitation_email.name]


def test_a_rolled_back_action_queues_nothing(broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        send_invitation_email.delay_on_commit(123)
        raise RuntimeError("the action failed")
    assert not QueuedTask.objects.exists()
    assert broker.queued() == []


def test_a_claimed_row_is_not_sent_twice(broker):
    from datetime import timedelta

    from django.utils import timezone

    QueuedTask.objects.create(
        task=send_invitation_email.name, args=[1], claimed_until=timezone.now() + timedelta(seconds=60)
    )
    assert outbox_relay() == 0  # another relay is sending it
    QueuedTask.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert outbox_relay() == 1  # that relay died: its claim ran out
    assert len(broker.queued()) == 1
