import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from teams.models import Organization


class Project(models.Model):
    """The sample product's unit of work; billing counts and limits these per organization."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("project_detail", args=[self.organization.slug, self.code])


class AiModel(models.TextChoices):
    GPT_4 = "gpt-4", "GPT-4"
    GPT_4O_MINI = "gpt-4o-mini", "GPT-4o mini"
    IMAGE = "image", "Image"


class Generation(models.Model):
    """One run of the (simulated) AI action. The model name is what later prices it in credits."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py): indexed by the unique constraint below.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generations")
    model = models.CharField(max_length=32, choices=AiModel.choices, default=AiModel.GPT_4)
    prompt = models.TextField(max_length=4000)
    result = models.TextField()
    tokens = models.PositiveIntegerField(help_text="Prompt plus output tokens, as a model counts.")
    idempotency_key = models.CharField(
        max_length=255, help_text="Sent by the form or API client, so a retry generates once."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "project", "idempotency_key"],
                name="projects_generation_unique_org_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.prompt[:40]}"

    @property
    def is_image(self) -> bool:
        return self.model == AiModel.IMAGE
