from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_run_kind_dataset_import"),
    ]

    operations = [
        migrations.AddField(
            model_name="artifact",
            name="attempt",
            field=models.PositiveIntegerField(default=0, help_text="the run's attempt that wrote it (0: not recorded)"),
        ),
        migrations.AddField(
            model_name="metricpoint",
            name="attempt",
            field=models.PositiveIntegerField(default=0, help_text="the run's attempt that wrote it (0: not recorded)"),
        ),
    ]
