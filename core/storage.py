"""Local access to stored artifacts for ML code that needs a file path (LoRA adapters, model folders)."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile

from core.models import Artifact


def artifact_local_path(artifact: Artifact) -> Path:
    """A local file holding the artifact (see :func:`stored_file_local_path`)."""
    return stored_file_local_path(artifact.file, artifact.sha256)


def stored_file_local_path(file: FieldFile, sha256: str) -> Path:
    """A local file holding a stored file: the file itself on a filesystem storage, otherwise a copy
    downloaded once into ``var/cache/artifacts/<sha256>/`` (S3-compatible shared storage).
    """
    try:
        return Path(default_storage.path(file.name))
    except NotImplementedError:
        target = Path(settings.VAR_DIR) / "cache" / "artifacts" / sha256 / Path(file.name).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f"{target.suffix}.{os.getpid()}.partial")
            with file.open("rb") as source, partial.open("wb") as sink:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    sink.write(chunk)
            partial.rename(target)
        return target


def zip_directory(folder: str | Path) -> bytes:
    """The files under ``folder`` as zip bytes, byte-identical for identical contents (sorted, fixed times)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def artifact_directory(artifact: Artifact) -> Path:
    """A local folder with the contents of a zipped-folder artifact, unpacked once per content hash."""
    target = Path(settings.VAR_DIR) / "cache" / "folders" / artifact.sha256
    if not target.exists():
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(artifact_local_path(artifact)) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ValueError(f"Artifact {artifact.pk} holds an unsafe path {member!r}.")
            archive.extractall(partial)
        try:
            partial.rename(target)
        except OSError:  # another process unpacked it first
            shutil.rmtree(partial, ignore_errors=True)
    return target


def artifact_as_file_named(artifact: Artifact, filename: str) -> Path:
    """The artifact as ``<folder>/<filename>`` in a folder of its own (for loaders that expect a file name,
    such as diffusers' ``load_lora_weights(folder)``), made once per content hash."""
    target = Path(settings.VAR_DIR) / "cache" / "named" / artifact.sha256 / filename
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{filename}.{os.getpid()}.partial")
        shutil.copyfile(artifact_local_path(artifact), partial)
        partial.rename(target)
    return target
