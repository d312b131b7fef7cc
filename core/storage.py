"""Local access to stored artifacts for ML code that needs a file path (LoRA adapters, checkpoints)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from core.models import Artifact


def artifact_local_path(artifact: Artifact) -> Path:
    """A local file holding the artifact: the stored file itself on a filesystem storage, otherwise a
    copy downloaded once into ``var/cache/artifacts/<sha256>/`` (S3-compatible shared storage).
    """
    try:
        return Path(default_storage.path(artifact.file.name))
    except NotImplementedError:
        target = Path(settings.VAR_DIR) / "cache" / "artifacts" / artifact.sha256 / Path(artifact.file.name).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            with artifact.file.open("rb") as source, partial.open("wb") as sink:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    sink.write(chunk)
            partial.rename(target)
        return target
