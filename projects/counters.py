"""Tell the entitlement engine how to count this app's limited resource."""

from billing.entitlements import register_counter
from projects.models import Project

register_counter("projects", lambda org: Project.objects.filter(organization=org).count())
