"""The project's list pagination: ``?limit=`` and ``?offset=`` with a maximum page size.

A limit or offset that is not a non-negative integer (or is beyond 64 bits) answers 400 naming the parameter;
a limit above ``max_limit`` is cut to ``max_limit`` (the ``next`` link carries the limit used).
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

from core.ids import MAX_ID


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_limit(self, request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        value = self._non_negative(raw, self.limit_query_param)
        if value == 0:
            raise ValidationError({self.limit_query_param: ["Ensure this value is at least 1."]})
        return min(value, self.max_limit)

    def get_offset(self, request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        return self._non_negative(raw, self.offset_query_param)

    @staticmethod
    def _non_negative(raw: str, name: str) -> int:
        text = raw.strip()
        if not text.isascii() or not text.isdigit():
            raise ValidationError({name: ["A non-negative integer is required."]})
        value = int(text)
        if value > MAX_ID:
            raise ValidationError({name: [f"Ensure this value is at most {MAX_ID}."]})
        return value

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "default": self.default_limit}
                parameter["description"] = f"Number of results to return per page (at most {self.max_limit})."
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
        return parameters
