"""Live counts for the `limit` features billing itself knows about."""

from billing.entitlements.counter_registry import register_counter
from teams.models import Membership

register_counter("team_members", lambda org: Membership.objects.filter(organization=org).count())
