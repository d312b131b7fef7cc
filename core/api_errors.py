"""One exception handler for the API: every domain error becomes a 4xx with a message that says what to fix."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.run_kinds import UnknownRunKind
from core.run_states import IllegalTransition


class Conflict(Exception):
    """A request that clashes with the current state of a resource (answered with 409)."""


def exception_handler(exc, context):
    if isinstance(exc, IllegalTransition | Conflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, UnknownRunKind):
        return Response({"kind": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    return drf_exception_handler(exc, context)
