from django.urls import path

from projects import api

urlpatterns = [
    path("projects/", api.ProjectListApi.as_view(), name="api_projects"),
    path("projects/<uuid:code>/", api.ProjectDetailApi.as_view(), name="api_project"),
    path(
        "projects/<uuid:code>/generations/",
        api.GenerationApi.as_view(),
        name="api_project_generations",
    ),
]
