from django.contrib import admin

from projects.models import Generation, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "created_by", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "organization__name", "organization__slug"]
    readonly_fields = ["code"]
    list_select_related = ["organization", "created_by"]


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "project", "model", "tokens", "created_by"]
    list_filter = ["model"]
    search_fields = ["prompt", "project__name", "project__organization__slug"]
    readonly_fields = ["code"]
    list_select_related = ["project", "created_by"]
