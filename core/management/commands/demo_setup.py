"""Create one demo user per role (idempotent) and print their logins. For the embedded default only."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from core.roles import Role

DEMO_USERS = (
    ("annotator", Role.ANNOTATOR),
    ("engineer", Role.ENGINEER),
    ("reviewer", Role.REVIEWER),
    ("admin", Role.ADMIN),
)


class Command(BaseCommand):
    help = "Create demo users annotator, engineer, reviewer and admin (password: <name>-demo-pass)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password-suffix", default="-demo-pass")

    def handle(self, *args, **options) -> None:
        users = get_user_model().objects
        self.stdout.write("Demo logins (change them before exposing this server):")
        for username, role in DEMO_USERS:
            password = f"{username}{options['password_suffix']}"
            user, created = users.get_or_create(username=username)
            if created:
                user.set_password(password)
            if role == Role.ADMIN:
                user.is_staff = user.is_superuser = True
            else:
                user.groups.add(Group.objects.get_or_create(name=role.value)[0])
            user.save()
            self.stdout.write(f"  {role.value:<10} username={username:<10} password={password}")
