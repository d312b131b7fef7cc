"""The PNG of a generated image as an HTTP response (callers check who may see it first)."""

from __future__ import annotations

from django.http import FileResponse, Http404

from generators.models import GeneratedImage


def png_response(image: GeneratedImage) -> FileResponse:
    """Stream ``image``'s file; browsers may keep it privately (its bytes never change). A file missing from
    storage is a 404, as for an unknown image."""
    try:
        handle = image.file.open("rb")
    except FileNotFoundError:
        raise Http404("The image's file is missing from storage.") from None
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400, immutable"
    return response
