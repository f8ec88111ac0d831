"""Notices recorded under the key of their fact, and sent once after the commit."""

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import (
    Notice,
    NoticeKind,
    NoticePreference,
)
from billing.notifications.emails import _BUILDERS, _url
from teams.models import Organization, User


def notice_queue(
    *, organization: Organization, kind: str, key: str, data: dict | None = None
) -> Notice | None:
    """Record the notice `key` and send it after the commit; None when it was recorded before
    (the fact is already told)."""
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                organization=organization, kind=kind, key=f"{kind}:{key}", data=data or {}
            )
    except IntegrityError:
        return None
    deliver_notice.delay_on_commit(notice.pk)
    return notice


def notice_recipients(*, organization: Organization, kind: str) -> list[str]:
    """The billing contacts, less the members who turned this kind off (never a critical one)."""
    contacts = organization.billing_contacts()
    if kind in NoticeKind.critical():
        return contacts
    muted = {
        email
        for email, kinds in NoticePreference.objects.filter(organization=organization).values_list(
            "user__email", "muted"
        )
        if kind in (kinds or [])
    }
    # The billing address is not a member: it cannot mute anything, unless a member shares it.
    return [email for email in contacts if email not in muted]


def notice_send(*, notice_id: int) -> Notice | None:
    """Send a recorded notice once: the claim (a conditional update) comes before the email and
    is undone if the mail server is away, so the task's retry sends it."""
    claimed = Notice.objects.filter(pk=notice_id, status=Notice.Status.PENDING).update(
        status=Notice.Status.SENDING
    )
    if not claimed:
        return None
    notice = Notice.objects.select_related("organization").get(pk=notice_id)
    email = _BUILDERS[notice.kind](notice)
    recipients = []
    if email is not None:
        wanted = notice_recipients(organization=notice.organization, kind=notice.kind)
        recipients = sorted(set(wanted) | set(email.also_to))
    if email is None or not recipients:
        # Nothing to tell any more (paid before this ran) or nobody to tell it to.
        Notice.objects.filter(pk=notice_id).update(status=Notice.Status.SKIPPED, sent_at=timezone.now())
        return notice
    organization = notice.organization
    context = {
        **email.context,
        "organization": organization,
        "action_label": email.action_label,
        "action_url": email.action_url,
        "critical": notice.kind in NoticeKind.critical(),
        "settings_url": _url("billing_notices", organization),
        "site_url": settings.SITE_URL,
    }
    body = render_to_string(email.template, context)
    layout = {**context, "subject": email.subject, "body": body.strip()}
    try:
        send_mail(
            subject=email.subject,
            message=render_to_string("billing/email/base.txt", layout),
            html_message=render_to_string("billing/email/base.html", layout),
            from_email=None,
            recipient_list=recipients,
        )
    except OSError:
        Notice.objects.filter(pk=notice_id).update(status=Notice.Status.PENDING)
        raise
    Notice.objects.filter(pk=notice_id).update(
        status=Notice.Status.SENT, sent_at=timezone.now(), recipients=recipients, subject=email.subject
    )
    return notice


@shared_task(name="billing.tasks.deliver_notice", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def deliver_notice(notice_id: int) -> None:
    notice_send(notice_id=notice_id)


def notice_preferences_update(
    *, organization: Organization, user: User, muted: list[str]
) -> NoticePreference:
    """Set the notices `user` does not want from `organization` (critical ones are always sent)."""
    optional = {kind.value for kind in NoticeKind.optional()}
    wanted = sorted(set(muted) & optional)
    preference, _ = NoticePreference.objects.update_or_create(
        organization=organization, user=user, defaults={"muted": wanted, "updated_at": timezone.now()}
    )
    return preference


def notice_muted(*, organization: Organization, user: User) -> set[str]:
    preference = NoticePreference.objects.filter(organization=organization, user=user).first()
    return set(preference.muted) if preference else set()
