from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from teams import keycache
from teams.models import Invitation, InvitationStatus


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: int) -> None:
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(pk=invitation_id, status=InvitationStatus.PENDING)
        .first()
    )
    if invitation is None:
        return  # accepted or revoked before the mail went out
    context = {
        "invitation": invitation,
        "accept_url": settings.SITE_URL + invitation.get_accept_url(),
    }
    send_mail(
        subject=f"You're invited to join {invitation.organization.name} on Tally",
        message=render_to_string("teams/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


@shared_task
def flush_api_key_use() -> int:
    return keycache.use_flush()
