"""Input validation helpers shared by every app's API and run configs."""

from __future__ import annotations

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """A serializer that rejects keys it does not know, naming them and the keys it does know."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields)) or "none"
                raise serializers.ValidationError({key: [f"Unknown field. Known fields: {known}."] for key in unknown})
        return super().to_internal_value(data)
