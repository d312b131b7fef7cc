"""Generation service overhead: images/s and peak memory of our generation run against a bare
diffusers pipeline call with identical settings, on the sandbox model, measured in the same run.

    python bench/generation.py                      # 24 eval prompts × 4 images, batch 16, 20 steps
    python bench/generation.py --images-per-prompt 2 --steps 10 --rounds 3

Each measurement runs in a fresh subprocess (so peak RSS is its own), bare and service alternating
(ABAB...). The service path is the real one: a ``generate`` Run executed by ``run_execute`` with the
pipeline cache, PNG encoding, content-addressed storage and database rows (SQLite in a temp folder).
The bare path calls ``StableDiffusionPipeline.__call__`` with one generator per image and keeps the
PIL images. Both load the pipeline and generate one warm-up batch before the clock starts.
Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_django(var_dir: str) -> None:
    os.environ["PLATFORM_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("sandbox_setup", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115


def _prompts() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from generators.sandbox_catalog import sandbox_prompts

    return [p["text"] for p in sandbox_prompts()["eval"]]


def measure_bare(args) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from generators.sandbox import PIPELINE_PATH

    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE_PATH).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    items = [(p, args.seed + k) for p in _prompts() for k in range(args.images_per_prompt)]
    warm_up = [items[: args.batch_size]]
    batches = [items[start : start + args.batch_size] for start in range(0, len(items), args.batch_size)]
    images = []
    for index, batch in enumerate(warm_up + batches):
        if index == len(warm_up):
            began, images = time.perf_counter(), []
        with torch.inference_mode():
            out = pipe(
                prompt=[p for p, _ in batch],
                generator=[torch.Generator().manual_seed(s) for _, s in batch],
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                width=32,
                height=32,
                output_type="pil",
            )
        images.extend(out.images)
    elapsed = time.perf_counter() - began
    return {"images": len(images), "seconds": elapsed}


def measure_service(args) -> dict:
    with tempfile.TemporaryDirectory() as var_dir:
        _setup_django(var_dir)
        from core import services
        from core.run_execution import run_execute
        from generators import selectors
        from generators.models import ModelVersion, PromptSet
        from generators.pipeline import SamplerSettings, default_cache, generate_images

        version = ModelVersion.objects.get(base_model__name="sandbox")
        pipe = default_cache.get(selectors.pipeline_spec_for(version, device="cpu", dtype="fp32"))
        warm_up = SamplerSettings(width=32, height=32, steps=args.steps, guidance_scale=5.0)
        generate_images(pipe, _prompts()[: args.batch_size], list(range(args.batch_size)), warm_up)  # same warm-up
        config = {
            "model_versions": [version.pk],
            "prompt_set": PromptSet.objects.get(name="sandbox-eval").pk,
            "images_per_prompt": args.images_per_prompt,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "device": "cpu",
        }
        run = services.run_create(kind="generate", config=config)
        began = time.perf_counter()
        outcome = run_execute(run_id=run.pk, worker="bench")
        elapsed = time.perf_counter() - began
        run.refresh_from_db()
        if outcome != "succeeded":
            raise SystemExit(f"service run {outcome}: {run.error}")
        return {"images": run.result["created"], "seconds": elapsed}


def child(variant: str, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = (measure_bare if variant == "bare" else measure_service)(args)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--child", choices=["bare", "service"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    passthrough = [
        f"--images-per-prompt={args.images_per_prompt}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--threads={args.threads}",
        f"--seed={args.seed}",
    ]
    results: dict[str, list[dict]] = {"bare": [], "service": []}
    for _ in range(args.rounds):
        for variant in ("bare", "service"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, *passthrough],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for variant, rows in results.items():
        rates = [r["images"] / r["seconds"] for r in rows]
        summary[variant] = {
            "images_per_second": round(statistics.median(rates), 2),
            "best_images_per_second": round(max(rates), 2),
            "all_rates": [round(r, 2) for r in rates],
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in rows), 1),
            "images": rows[0]["images"],
        }
    summary["ratio_service_over_bare"] = round(
        summary["service"]["images_per_second"] / summary["bare"]["images_per_second"], 3
    )
    summary["ratio_best_service_over_best_bare"] = round(
        summary["service"]["best_images_per_second"] / summary["bare"]["best_images_per_second"], 3
    )
    summary["settings"] = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "guidance_scale": 5.0,
        "size": "32x32",
        "scheduler": "ddim",
        "threads": args.threads,
        "rounds": args.rounds,
    }
    print(f"{'path':<10}{'images/s (median)':>20}{'all rounds':>30}{'peak RSS MiB':>15}")
    for variant in ("bare", "service"):
        row = summary[variant]
        print(f"{variant:<10}{row['images_per_second']:>20}{str(row['all_rates']):>30}{row['peak_rss_mib']:>15}")
    print(
        f"service / bare images/s: median {summary['ratio_service_over_bare']}, "
        f"best {summary['ratio_best_service_over_best_bare']} (target ≥ 0.95)"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
