"""Empty: the names dj-stripe's migrations have, so a test database records the same ones."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("djstripe", "0002_2_10")]
    operations = []
