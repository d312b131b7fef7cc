"""Accounts: who may create, deactivate and reactivate whom (the writes are ``core.services.user_create`` and
``user_set_active``), the checks a new username and password pass, and invite links' tokens and states.

Engineers manage annotators and reviewers; admins manage anybody; nobody deactivates themselves. A deactivated
user keeps their votes; ``is_active=False`` refuses their logins and tokens (``core.authentication``).

Invite links (``core.models.Invite``; engineers and admins create them): a random token in the link, only its
SHA-256 stored; single use, expiring (``INVITE_DAYS`` by default, at most ``INVITE_MAX_DAYS``); whoever opens it
chooses a username and password and gets an annotator account.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

from core.roles import GROUP_ROLES, Role, has_role

INVITE_DAYS = 7
INVITE_MAX_DAYS = 30
INVITE_ROLE = Role.ANNOTATOR

# Roles an engineer may give or manage; admins may give any group role.
ENGINEER_MANAGED = frozenset({Role.ANNOTATOR, Role.REVIEWER})


def may_grant(actor, roles) -> bool:
    """Whether ``actor`` may create an account holding ``roles``."""
    if has_role(actor, Role.ADMIN):
        return True
    return has_role(actor, Role.ENGINEER) and set(roles) <= ENGINEER_MANAGED


def may_manage(actor, target) -> bool:
    """Whether ``actor`` may deactivate or reactivate ``target`` (never themselves)."""
    if actor.pk == target.pk:
        return False
    if has_role(actor, Role.ADMIN):
        return True
    if target.is_staff or target.is_superuser:
        return False
    return has_role(actor, Role.ENGINEER) and group_roles_of(target) <= ENGINEER_MANAGED


def group_roles_of(user) -> set[Role]:
    """The group roles of ``user``, active or not (``user_roles`` answers nothing for an inactive user); reads
    ``user.groups.all()``, so a prefetch of ``groups`` serves it."""
    names = {group.name for group in user.groups.all()}
    return {role for role in GROUP_ROLES if role.value in names}


def listed_roles(user) -> list[str]:
    """The roles a user holds as listed on the people page and ``GET users/``: their groups, and admin for staff,
    whether or not the account is active."""
    roles = group_roles_of(user) | ({Role.ADMIN} if user.is_staff or user.is_superuser else set())
    return sorted(role.value for role in roles)


def generated_password() -> str:
    return secrets.token_urlsafe(12)


def check_new_username(value: str) -> str:
    """``value`` if it may name a new account (Django's username characters, not taken in any letter case)."""
    UnicodeUsernameValidator()(value)
    if get_user_model().objects.filter(username__iexact=value).exists():
        raise ValidationError(f"A user named {value!r} already exists.")
    return value


def check_new_password(password: str, username: str) -> str:
    """``password`` if Django's password validators accept it for ``username``."""
    validate_password(password, user=get_user_model()(username=username))
    return password


# --- Invite links ------------------------------------------------------------------------------------------------


def invite_token() -> str:
    """A new invite link's token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def invite_token_hash(token: str) -> str:
    """What is stored of a token (a random 256-bit token needs no salt or slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def invite_state(invite, now: datetime) -> str:
    """``pending``, ``used``, ``revoked`` or ``expired``."""
    if invite.used_at is not None:
        return "used"
    if invite.revoked_at is not None:
        return "revoked"
    return "expired" if invite.expires_at <= now else "pending"


def invite_problem(invite, now: datetime) -> str:
    """Why ``invite`` (or ``None``: no such link) cannot make an account now, said to its holder; empty if it can."""
    if invite is None:
        return (
            "This invite link is not valid. Check that you opened the whole link, or ask whoever invited you for a "
            "new one."
        )
    state = invite_state(invite, now)
    if state == "used":
        return (
            f"This invite link was already used, on {invite.used_at:%Y-%m-%d at %H:%M} UTC: each link makes one "
            "account. Log in with that account, or ask whoever invited you for a new link."
        )
    if state == "revoked":
        return "This invite link was withdrawn. Ask whoever invited you for a new one."
    if state == "expired":
        return (
            f"This invite link expired on {invite.expires_at:%Y-%m-%d at %H:%M} UTC. Ask whoever invited you for a "
            "new one."
        )
    return ""
