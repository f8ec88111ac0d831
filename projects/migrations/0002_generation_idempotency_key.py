import uuid

from django.db import migrations, models


def fill_keys(apps, schema_editor):
    Generation = apps.get_model("projects", "Generation")
    for generation in Generation.objects.filter(idempotency_key__isnull=True).only("pk"):
        Generation.objects.filter(pk=generation.pk).update(idempotency_key=uuid.uuid4().hex)


class Migration(migrations.Migration):
    """A unique, required column in steps: add it empty and fill it here; 0003 requires it."""

    dependencies = [("projects", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="idempotency_key",
            field=models.CharField(max_length=255, null=True),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop, elidable=True),
    ]
