"""Pipeline loading and reproducible generation (ML side, no Django)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from generators.pipeline import (
    GenerationOutOfMemory,
    PipelineCache,
    PipelineLoadError,
    PipelineSpec,
    SamplerSettings,
    generate_images,
    generate_images_splitting_on_oom,
    load_pipeline,
    native_image_size,
    png_bytes,
)

SETTINGS = SamplerSettings(width=32, height=32, steps=10, guidance_scale=5.0)
PROMPTS = ["a red circle", "a blue cross", "a large green square", "a small white triangle"]
SEEDS = [11, 12, 13, 14]


def _pixels(images) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def test_a_saved_folder_loads_through_the_same_from_pretrained_path(sandbox_pipe, tmp_path):
    sandbox_pipe.save_pretrained(tmp_path / "copy")
    copy = load_pipeline(PipelineSpec(source=str(tmp_path / "copy"), device="cpu"))  # AutoPipelineForText2Image

    assert type(copy).__name__ == "StableDiffusionPipeline"
    assert np.array_equal(
        _pixels(generate_images(copy, PROMPTS[:2], SEEDS[:2], SETTINGS)),
        _pixels(generate_images(sandbox_pipe, PROMPTS[:2], SEEDS[:2], SETTINGS)),
    )


def test_a_hub_id_that_cannot_be_fetched_is_a_clear_error():
    with pytest.raises(
        PipelineLoadError, match="Could not load the checkpoint 'no-such-org/no-such-model' \\(hub id\\)"
    ):
        load_pipeline(PipelineSpec(source="no-such-org/no-such-model", device="cpu"))


def test_an_unreadable_local_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(PipelineLoadError, match="local folder"):
        load_pipeline(PipelineSpec(source=str(tmp_path), device="cpu"))


def test_half_precision_on_the_cpu_is_refused(sandbox_spec):
    with pytest.raises(PipelineLoadError, match="fp16 is not supported on the CPU"):
        load_pipeline(PipelineSpec(source=sandbox_spec.source, device="cpu", dtype="fp16"))


def test_same_inputs_give_identical_pixels_and_png_bytes(sandbox_pipe):
    first = generate_images(sandbox_pipe, PROMPTS, SEEDS, SETTINGS)
    second = generate_images(sandbox_pipe, PROMPTS, SEEDS, SETTINGS)

    assert np.array_equal(_pixels(first), _pixels(second))
    assert [png_bytes(i) for i in first] == [png_bytes(i) for i in second]


def test_an_image_depends_on_its_own_seed_not_on_its_batch(sandbox_pipe):
    batched = _pixels(generate_images(sandbox_pipe, PROMPTS, SEEDS, SETTINGS))
    alone = _pixels([generate_images(sandbox_pipe, [p], [s], SETTINGS)[0] for p, s in zip(PROMPTS, SEEDS, strict=True)])
    reordered = _pixels(generate_images(sandbox_pipe, PROMPTS[::-1], SEEDS[::-1], SETTINGS))[::-1]

    # Each image has its own generator, so its noise never depends on the batch. The CPU's batched
    # matrix products round differently by batch size, which can move a pixel by one 8-bit level.
    assert np.abs(batched - alone).max() <= 1
    assert np.mean(batched != alone) < 0.01
    assert np.array_equal(batched, reordered) or np.abs(batched - reordered).max() <= 1
    assert not np.array_equal(batched[0], batched[1])


def test_scheduler_is_selectable_and_validated(sandbox_pipe):
    ddim = _pixels(generate_images(sandbox_pipe, PROMPTS[:1], SEEDS[:1], SETTINGS))
    euler = _pixels(
        generate_images(
            sandbox_pipe, PROMPTS[:1], SEEDS[:1], SamplerSettings(**{**SETTINGS.as_dict(), "scheduler": "euler"})
        )
    )
    assert not np.array_equal(ddim, euler)
    assert type(sandbox_pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    generate_images(sandbox_pipe, PROMPTS[:1], SEEDS[:1], SETTINGS)
    assert type(sandbox_pipe.scheduler).__name__ == "DDIMScheduler"
    with pytest.raises(ValueError, match="Unknown scheduler"):
        SamplerSettings(scheduler="magic")


@pytest.mark.parametrize(("width", "height"), [(33, 32), (32, 4), (4096, 32)])
def test_invalid_sizes_are_refused(width, height):
    with pytest.raises(ValueError, match="multiple of 8 between 8 and 2048"):
        SamplerSettings(width=width, height=height)


def test_native_image_size_reads_unet_transformer_and_default_sample_size(sandbox_pipe):
    assert native_image_size(sandbox_pipe) == sandbox_pipe.unet.config.sample_size * sandbox_pipe.vae_scale_factor
    config = SimpleNamespace(sample_size=128)
    assert native_image_size(SimpleNamespace(transformer=SimpleNamespace(config=config), vae_scale_factor=8)) == 1024
    assert native_image_size(SimpleNamespace(default_sample_size=64, vae_scale_factor=16)) == 1024
    with pytest.raises(PipelineLoadError, match="does not say its native image size"):
        native_image_size(SimpleNamespace(vae_scale_factor=8))


def test_settings_digest_is_stable_and_sensitive():
    assert SETTINGS.digest() == SamplerSettings(width=32, height=32, steps=10, guidance_scale=5.0).digest()
    assert SETTINGS.digest() != SamplerSettings(width=32, height=32, steps=11, guidance_scale=5.0).digest()


def _save_random_lora(unet, folder, seed: int = 0) -> None:
    """A LoRA adapter with random (non-zero) weights, saved in the diffusers format."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)


def test_lora_adapter_round_trip(sandbox_spec, sandbox_pipe, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sandbox_spec.source, subfolder="unet")
    _save_random_lora(unet, tmp_path)
    adapted_spec = PipelineSpec(
        source=sandbox_spec.source,
        pipeline_class="StableDiffusionPipeline",
        device="cpu",
        adapter_path=str(tmp_path),
        adapter_weight_name="pytorch_lora_weights.safetensors",
    )
    adapted = load_pipeline(adapted_spec)

    base_images = _pixels(generate_images(sandbox_pipe, PROMPTS, SEEDS, SETTINGS))
    first = _pixels(generate_images(adapted, PROMPTS, SEEDS, SETTINGS))
    again = _pixels(generate_images(load_pipeline(adapted_spec), PROMPTS, SEEDS, SETTINGS))

    assert not np.array_equal(first, base_images)  # the adapter changes the output
    assert np.array_equal(first, again)  # and reproduces it exactly from a fresh load


def test_a_missing_adapter_is_a_clear_error(sandbox_spec, tmp_path):
    spec = PipelineSpec(source=sandbox_spec.source, device="cpu", adapter_path=str(tmp_path / "nope"))
    with pytest.raises(PipelineLoadError, match="Could not load the LoRA adapter"):
        load_pipeline(spec)


def test_cache_loads_each_spec_once_and_evicts_the_oldest(sandbox_spec, monkeypatch):
    loaded = []
    monkeypatch.setattr("generators.pipeline.load_pipeline", lambda spec: loaded.append(spec) or object())
    cache = PipelineCache(capacity=2)
    specs = [PipelineSpec(source=f"org/model-{i}") for i in range(3)]

    first = cache.get(specs[0])
    assert cache.get(specs[0]) is first
    cache.get(specs[1])
    cache.get(specs[2])
    cache.get(specs[0])

    assert loaded == [specs[0], specs[1], specs[2], specs[0]]


class _FakeGpuPipe:
    """Stands in for a CUDA pipeline (no GPU here): runs out of memory above ``fits`` images."""

    def __init__(self, fits: int) -> None:
        self.fits, self.calls = fits, []

    def __call__(self, prompts, seeds, settings):
        self.calls.append(len(prompts))
        if len(prompts) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [f"image-{seed}" for seed in seeds]


def test_out_of_memory_splits_the_batch_and_keeps_order(monkeypatch):
    fake = _FakeGpuPipe(fits=2)
    monkeypatch.setattr("generators.pipeline.generate_images", lambda pipe, p, s, st: fake(p, s, st))

    images = generate_images_splitting_on_oom(None, ["p"] * 7, list(range(7)), SETTINGS)

    assert images == [f"image-{i}" for i in range(7)]
    assert fake.calls[0] == 7 and max(fake.calls[1:]) <= 4


def test_out_of_memory_on_one_image_is_a_readable_failure(monkeypatch):
    fake = _FakeGpuPipe(fits=0)
    monkeypatch.setattr("generators.pipeline.generate_images", lambda pipe, p, s, st: fake(p, s, st))

    with pytest.raises(GenerationOutOfMemory, match="One 32×32 image at fp32 does not fit"):
        generate_images_splitting_on_oom(None, ["p", "q"], [1, 2], SETTINGS)


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(monkeypatch):
    def broken(pipe, p, s, st):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr("generators.pipeline.generate_images", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        generate_images_splitting_on_oom(None, ["p"], [1], SETTINGS)
