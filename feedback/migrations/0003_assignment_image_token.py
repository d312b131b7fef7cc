# Each assignment gets an opaque token that names its images in URLs (existing rows get one each).

import secrets

from django.db import migrations, models

import feedback.models


def give_each_assignment_a_token(apps, schema_editor):
    Assignment = apps.get_model("feedback", "Assignment")
    batch = []
    for assignment in Assignment.objects.filter(image_token__isnull=True).only("id").iterator(chunk_size=2000):
        assignment.image_token = secrets.token_urlsafe(16)
        batch.append(assignment)
        if len(batch) >= 2000:
            Assignment.objects.bulk_update(batch, ["image_token"])
            batch = []
    Assignment.objects.bulk_update(batch, ["image_token"])


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0002_campaign_preparation"),
    ]

    operations = [
        migrations.AddField(
            model_name="assignment",
            name="image_token",
            field=models.CharField(max_length=32, null=True, editable=False),
        ),
        migrations.RunPython(give_each_assignment_a_token, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="assignment",
            name="image_token",
            field=models.CharField(
                default=feedback.models.new_image_token,
                editable=False,
                help_text="opaque name of this assignment's images in URLs (the rater's, for its left and right side)",
                max_length=32,
                unique=True,
            ),
        ),
    ]
