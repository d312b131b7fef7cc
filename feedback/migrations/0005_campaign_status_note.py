from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0004_campaign_sampler_settings"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="status_note",
            field=models.CharField(
                blank=True,
                default="",
                help_text="why the campaign is in its status (e.g. back to draft)",
                max_length=500,
            ),
        ),
    ]
