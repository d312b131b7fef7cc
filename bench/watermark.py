"""Watermark detection rates (clean, JPEG q75, resize ×0.5, 80 % crop) and false positives on unmarked images.

    .venv/bin/python -m bench.watermark --marked 160 --unmarked 1000 --workers 2

Marked images: half sandbox pipeline images (32×32, upscaled bicubic to the size a real SD model makes),
half procedural textures (multi-octave noise: the hard case for a block code), at 512×512 and 256×256, each
marked with (instance 1, a distinct image id) through ``generators.watermark.embed`` and read back through
``detect`` (the full search ``identify_image`` uses). An image counts as detected only if the exact
(instance, image id) comes back. Attacks: JPEG quality 75 (Pillow, 4:2:0), resize to half of each side
(bicubic), a centred crop keeping 80 % of each side. Unmarked images: the same kinds unmarked, plus flat
colours, gradients, white noise and JPEG copies; any valid mark read from them is a false positive.
``--stock N`` also runs the package's own ``dwtDct`` (SDXL's method, 48 bits) on N marked images and counts
exact clean read-backs, the reason the platform uses ``dwtDctSvd``. No Django.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from generators import watermark

ATTACKS = ("clean", "jpeg_q75", "resize_0.5", "crop_80")


def texture(size: int, rng: np.random.Generator) -> Image.Image:
    """A procedural colour texture: bicubic noise at five octaves, stretched to the full range."""
    out = np.zeros((size, size, 3))
    for octave in (4, 8, 16, 32, 64):
        noise = (rng.random((octave, octave, 3)) * 255).astype(np.uint8)
        out += np.asarray(Image.fromarray(noise).resize((size, size), Image.Resampling.BICUBIC), float) / octave**0.7
    out = (out - out.min()) / (out.max() - out.min()) * 255
    return Image.fromarray(out.astype(np.uint8))


def sandbox_pool(count: int) -> list[np.ndarray]:
    """``count`` sandbox pipeline images (32×32), from the offline benches' cache."""
    from bench.sandbox_images import cached_sandbox_images

    per_prompt = max(1, -(-count // 96))
    images = [image for group in cached_sandbox_images(per_prompt=per_prompt, seed=0).values() for image in group]
    return images[:count]


def upscaled(pixels: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)


def attack(image: Image.Image, name: str) -> Image.Image:
    if name == "jpeg_q75":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if name == "resize_0.5":
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC)
    if name == "crop_80":
        w, h = int(image.width * 0.8), int(image.height * 0.8)
        left, top = (image.width - w) // 2, (image.height - h) // 2
        return image.crop((left, top, left + w, top + h))
    return image


def marked_case(args: tuple[Image.Image, int, str]) -> dict:
    image, image_id, kind = args
    marked = watermark.embed(image, watermark.payload_bits(1, image_id))
    original = np.asarray(image, dtype=float)
    psnr = 10 * np.log10(255**2 / max(np.mean((np.asarray(marked, dtype=float) - original) ** 2), 1e-12))
    found = {}
    for name in ATTACKS:
        mark = watermark.detect(attack(marked, name))
        found[name] = mark is not None and (mark.instance, mark.image_id) == (1, image_id)
    return {"kind": kind, "size": image.width, "psnr": psnr, **found}


def unmarked_case(image: Image.Image) -> bool:
    return watermark.detect(image) is not None


def unmarked_images(count: int, sandbox: list[np.ndarray], rng: np.random.Generator) -> list[Image.Image]:
    images: list[Image.Image] = []
    for k in range(count):
        size = (512, 256, 384, 640)[k % 4]
        kind = k % 8
        if kind in (0, 1):
            image = upscaled(sandbox[k % len(sandbox)], size)
        elif kind in (2, 3):
            image = texture(size, rng)
        elif kind == 4:
            image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        elif kind == 5:
            ramp = np.linspace(0, 255, size)
            planes = [np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), k % 256)]
            image = Image.fromarray(np.stack(planes, axis=-1).astype(np.uint8))
        elif kind == 6:
            image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        else:
            image = attack(texture(size, rng), "jpeg_q75")
        images.append(image)
    return images


def stock_dwtdct(images: list[Image.Image]) -> tuple[int, int]:
    """(exact clean read-backs, images) with invisible-watermark's own ``dwtDct`` encoder and decoder."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    exact = 0
    for k, image in enumerate(images):
        payload = (k + 12345).to_bytes(6, "big")
        encoder = WatermarkEncoder()
        encoder.set_watermark("bytes", payload)
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        marked = encoder.encode(bgr, "dwtDct")
        exact += WatermarkDecoder("bytes", 48).decode(marked, "dwtDct") == payload
    return exact, len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--marked", type=int, default=160, help="marked images (half at 512, half at 256 px)")
    parser.add_argument("--unmarked", type=int, default=1000)
    parser.add_argument("--stock", type=int, default=20, help="images for the stock dwtDct comparison (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    rng = np.random.default_rng(options.seed)
    began = time.perf_counter()
    sandbox = sandbox_pool(max(options.marked, 96))

    cases = []
    for k in range(options.marked):
        size = 512 if k < options.marked // 2 else 256
        if k % 2 == 0:
            cases.append((upscaled(sandbox[k % len(sandbox)], size), 1000 + k, "sandbox"))
        else:
            cases.append((texture(size, rng), 1000 + k, "texture"))
    unmarked = unmarked_images(options.unmarked, sandbox[::-1], rng)
    with ProcessPoolExecutor(options.workers) as pool:
        results = list(pool.map(marked_case, cases, chunksize=4))
        false_positives = sum(pool.map(unmarked_case, unmarked, chunksize=16))

    print(f"watermark bench: {len(results)} marked images, {len(unmarked)} unmarked, seed {options.seed}")
    print(f"{'images':<22}{'n':>5}{'PSNR dB':>9}" + "".join(f"{name:>12}" for name in ATTACKS))
    groups = [("all", results)] + [
        (f"{kind} {size}px", [r for r in results if r["kind"] == kind and r["size"] == size])
        for size in (512, 256)
        for kind in ("sandbox", "texture")
    ]
    for label, rows in groups:
        if not rows:
            continue
        rates = "".join(f"{100 * np.mean([r[name] for r in rows]):>11.1f}%" for name in ATTACKS)
        print(f"{label:<22}{len(rows):>5}{np.mean([r['psnr'] for r in rows]):>9.1f}{rates}")
    print(f"false positives: {false_positives} of {len(unmarked)} unmarked images (full search, as identify_image)")
    if options.stock:
        exact, total = stock_dwtdct([case[0] for case in cases[: options.stock]])
        print(f"stock invisible-watermark dwtDct (SDXL's), 48 bits, clean exact read-back: {exact} of {total}")
    print(f"took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
