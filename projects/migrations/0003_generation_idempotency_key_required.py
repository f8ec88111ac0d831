from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("projects", "0002_generation_idempotency_key")]

    operations = [
        migrations.AlterField(
            model_name="generation",
            name="idempotency_key",
            field=models.CharField(
                help_text="Sent by the form or API client, so a retry generates once.",
                max_length=255,
            ),
        ),
        migrations.AddConstraint(
            model_name="generation",
            constraint=models.UniqueConstraint(
                fields=("project", "idempotency_key"), name="projects_generation_unique_key"
            ),
        ),
    ]
