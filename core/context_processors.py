"""Template context: the roles of the current user, for navigation and buttons."""

from core.roles import Role, has_role


def roles(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "is_annotator": has_role(user, Role.ANNOTATOR),
        "is_engineer": has_role(user, Role.ENGINEER),
        "is_reviewer": has_role(user, Role.REVIEWER),
        "is_admin": has_role(user, Role.ADMIN),
    }
