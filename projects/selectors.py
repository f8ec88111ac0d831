from projects.models import Generation, Project
from teams.models import Organization


def projects_of(organization: Organization):
    return Project.objects.filter(organization=organization).select_related("organization")


def recent_projects_of(organization: Organization, *, limit: int = 5):
    return projects_of(organization)[:limit]


def generations_of(project: Project, *, limit: int = 20):
    return Generation.objects.filter(project=project).select_related("created_by")[:limit]
