"""Register reference images of a prompt set: what an ``evaluate`` run's ``fid_clip`` and ``fid_inception``
compare with."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.cli import acting_user
from generators import selectors as generator_selectors
from generators.models import PromptSet
from rewards import services

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class Command(BaseCommand):
    help = (
        "Register a reference image set for a prompt set: the sandbox world's own renders of each prompt "
        "(--sandbox-per-prompt N), or every image of a folder (--folder DIR)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--prompt-set", required=True, help="prompt set name or id")
        parser.add_argument("--name", help="reference set name (default: <prompt set>-reference)")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--sandbox-per-prompt", type=int, help="render N ground-truth images of each sandbox prompt"
        )
        source.add_argument("--folder", help="a folder of images (png, jpg, webp), not tied to prompts")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sandbox renders")
        parser.add_argument("--description", default="")
        parser.add_argument("--user", help="who registers it (default: see core.cli.acting_user)")

    def handle(self, *args, **options) -> None:
        value = options["prompt_set"]
        prompt_set = PromptSet.objects.filter(pk=int(value)).first() if value.isdigit() else None
        prompt_set = prompt_set or PromptSet.objects.filter(name=value).first()
        if prompt_set is None:
            raise CommandError(f"No prompt set {value!r}.")
        if options["sandbox_per_prompt"] is not None:
            images, description = self._sandbox(prompt_set, options["sandbox_per_prompt"], options["seed"])
        else:
            images, description = self._folder(Path(options["folder"]))
        name = options["name"] or f"{prompt_set.name}-reference"
        try:
            reference_set = services.reference_set_create(
                name=name,
                prompt_set=prompt_set,
                images=images,
                description=options["description"] or description,
                created_by=acting_user(options.get("user")),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(
            f"reference set {reference_set.name} ({reference_set.pk}): {len(images)} images of {prompt_set.name}"
        )

    def _sandbox(self, prompt_set: PromptSet, count: int, seed: int) -> tuple[list, str]:
        from PIL import Image

        from generators.sandbox.references import NotASandboxCaption, ground_truth_images

        if not 1 <= count <= 64:
            raise CommandError("--sandbox-per-prompt must be between 1 and 64.")
        images = []
        for prompt in generator_selectors.prompts_of(prompt_set):
            try:
                renders = ground_truth_images(prompt.text, count, seed=seed)
            except NotASandboxCaption as exc:
                raise CommandError(f"{exc}: --sandbox-per-prompt is for the sandbox's prompt sets.") from exc
            for array in renders:
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="PNG")
                images.append((prompt, buffer.getvalue()))
        return images, f"the sandbox world's renders, {count} per prompt (seed {seed})"

    def _folder(self, folder: Path) -> tuple[list, str]:
        from PIL import Image, UnidentifiedImageError

        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        images = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError) as exc:
                raise CommandError(f"{path.name} is not a readable image: {exc}") from exc
            images.append((None, path.read_bytes()))
        return images, f"{len(images)} images from a folder"
