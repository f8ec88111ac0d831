from django.urls import path

from projects import views

urlpatterns = [
    path("o/<slug:org_slug>/", views.dashboard, name="dashboard"),
    path("o/<slug:org_slug>/projects/", views.project_list, name="project_list"),
    path("o/<slug:org_slug>/projects/new/", views.project_create, name="project_create"),
    path("o/<slug:org_slug>/projects/<uuid:code>/", views.project_detail, name="project_detail"),
    path("o/<slug:org_slug>/projects/<uuid:code>/edit/", views.project_edit, name="project_edit"),
    path(
        "o/<slug:org_slug>/projects/<uuid:code>/delete/",
        views.project_delete,
        name="project_delete",
    ),
    path(
        "o/<slug:org_slug>/projects/<uuid:code>/generate/",
        views.generation_create,
        name="generation_create",
    ),
]
