"""Login throttling (django-axes): who the client is, and what a refused login answers.

Axes counts failed logins per account and per client address in the database, so every web process sees
the same counts. Past ``LOGIN_FAILURE_LIMIT`` failures a login is refused, even with the right password,
until ``LOGIN_LOCKOUT_MINUTES`` have passed since the lockout began (a failure during it does not restart it).
The login forms answer 429 with the form and "try again in N minutes"; the token endpoint answers 429 with
``Retry-After`` (``core.api.AuthTokenView``).
"""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import SimpleTemplateResponse, TemplateResponse
from rest_framework.throttling import BaseThrottle

HTTP_TOO_MANY_REQUESTS = 429


def client_address(request: HttpRequest) -> str:
    """The client's address as the API throttles see it: ``REMOTE_ADDR``, or the address
    ``TRUSTED_PROXY_COUNT`` proxies put in ``X-Forwarded-For`` (a client cannot forge it past them)."""
    return BaseThrottle().get_ident(request)


def lockout_seconds() -> int:
    """How long a locked-out account or address waits after its last failure."""
    return math.ceil(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_message() -> str:
    minutes = max(1, math.ceil(lockout_seconds() / 60))
    return f"Too many failed login attempts: try again in {minutes} minute{'' if minutes == 1 else 's'}."


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """Axes' lockout answer (``AXES_LOCKOUT_CALLABLE``): the login page that was answered, its form saying
    why, with status 429 and ``Retry-After``; a plain 429 where there is no form."""
    message = lockout_message()
    context = getattr(original_response, "context_data", None) or {}
    if isinstance(original_response, SimpleTemplateResponse) and "form" in context:
        form = context["form"]
        form.errors.clear()
        form.add_error(None, message)
        response = TemplateResponse(
            request,
            original_response.template_name,
            {**context, "lockout_message": message},
            status=HTTP_TOO_MANY_REQUESTS,
        ).render()  # middleware answers are not rendered by the handler
    elif request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=HTTP_TOO_MANY_REQUESTS)
    else:
        response = HttpResponse(message, status=HTTP_TOO_MANY_REQUESTS, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(lockout_seconds())
    return response
