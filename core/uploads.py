"""How multipart uploads reach the disk: streamed into a temporary file, hashed on the way, stopped at a limit.

Set as the only ``FILE_UPLOAD_HANDLERS`` entry, so no uploaded file is ever held in a web process's memory
(Django's default keeps files under 2.5 MB in memory and parses larger ones into a temporary file only).
``UPLOAD_MAX_BYTES`` bounds what one request may upload: a larger ``Content-Length`` is refused before a byte
is read, and a body that grows past the limit while streaming (chunked, or a lying header) is cut off at it.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from rest_framework import status
from rest_framework.exceptions import APIException

# Multipart boundaries, part headers and small form fields (a name) on top of the file bytes themselves.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def format_bytes(size: int) -> str:
    """``2147483648`` → ``"2 GiB"`` (what a limit reads like in a message)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            {
                "file": [
                    f"The upload is larger than the limit of {format_bytes(limit)} (UPLOAD_MAX_BYTES); "
                    "import larger files on the server with manage.py import_pickapic."
                ]
            }
        )


class HashingLimitedUploadHandler(TemporaryFileUploadHandler):
    """Writes each uploaded file to a temporary file chunk by chunk, computes its SHA-256 on the way
    (``uploaded.sha256``) and refuses uploads beyond ``settings.UPLOAD_MAX_BYTES`` with a 413."""

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.limit: int = settings.UPLOAD_MAX_BYTES
        self.received = 0
        self.digest = hashlib.sha256()

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.limit + MULTIPART_OVERHEAD_BYTES:
            raise UploadTooLarge(self.limit)
        return None  # the normal multipart parsing goes on

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.digest = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.upload_interrupted()  # closes and removes the partial temporary file
            raise UploadTooLarge(self.limit)
        self.digest.update(raw_data)
        super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int):
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.digest.hexdigest()
        return uploaded
