"""The PNG of a generated image as an HTTP response (callers check who may see it first)."""

from __future__ import annotations

from django.http import FileResponse

from generators.models import GeneratedImage


def png_response(image: GeneratedImage) -> FileResponse:
    """Stream ``image``'s file; browsers may keep it privately (its bytes never change)."""
    response = FileResponse(image.file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400, immutable"
    return response
