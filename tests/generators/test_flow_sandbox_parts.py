"""The flow sandbox's parts (a tiny SD3): what training feeds the transformer is what the pipeline feeds it, the
saved folder loads with a plain ``StableDiffusion3Pipeline.from_pretrained``, and a few steps of its training run."""

from __future__ import annotations

import json

import pytest
import torch

from generators.sandbox import PIPELINE_PATH, flow_models
from generators.sandbox.dataset import SandboxDataset
from generators.sandbox.flow_train import flow_pipeline, sample_sigmas, t5_ids, train_flow
from generators.sandbox.tokenizer import build_tokenizer
from generators.sandbox.train import to_tensor, tokenize

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow-sandbox")
    clip_tokenizer = build_tokenizer(folder / "tokenizer")
    t5_tokenizer = flow_models.build_t5_tokenizer()
    vae = diffusers.AutoencoderKL.from_pretrained(PIPELINE_PATH, subfolder="vae").eval()
    images, samples = SandboxDataset(64, seed=3).arrays()
    transformer, encoders = train_flow(
        vae, clip_tokenizer, t5_tokenizer, to_tensor(images), [s.caption for s in samples], steps=4, batch=8, seed=0
    )
    pipe = flow_pipeline(vae, transformer, encoders, clip_tokenizer, t5_tokenizer)
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline", pipe, encoders, clip_tokenizer, t5_tokenizer


def test_training_conditions_the_transformer_exactly_as_the_pipeline_does(parts):
    _, pipe, encoders, clip_tokenizer, t5_tokenizer = parts
    captions = ["a large red circle", "a cyan cross", ""]
    with torch.no_grad():
        embeds, pooled = encoders(tokenize(clip_tokenizer, captions), t5_ids(t5_tokenizer, captions))
        want, _, want_pooled, _ = pipe.encode_prompt(
            captions,
            captions,
            captions,
            do_classifier_free_guidance=False,
            max_sequence_length=flow_models.MAX_SEQUENCE_LENGTH,
        )
    torch.testing.assert_close(embeds, want)
    torch.testing.assert_close(pooled, want_pooled)
    assert embeds.shape == (3, 2 * flow_models.MAX_SEQUENCE_LENGTH, flow_models.JOINT_DIM)


def test_the_saved_folder_loads_as_a_plain_sd3_pipeline_and_generates(parts):
    folder = parts[0]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["text_encoder_3"] == ["transformers", "T5EncoderModel"]
    assert not list(folder.rglob("*.bin")), "weights must be safetensors"
    pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and pipe.scheduler.config.shift == 3.0
    images = pipe(
        ["a red circle", "a blue square"],
        num_inference_steps=4,
        guidance_scale=4.0,
        max_sequence_length=flow_models.MAX_SEQUENCE_LENGTH,
        generator=[torch.Generator().manual_seed(k) for k in range(2)],
        output_type="np",
    ).images
    assert images.shape == (2, 32, 32, 3)


def test_t5_tokenizer_knows_every_caption_word_and_pads_to_the_sequence_length():
    tokenizer = flow_models.build_t5_tokenizer()
    ids = t5_ids(tokenizer, ["a small orange triangle", "zebra"])
    assert ids.shape == (2, flow_models.MAX_SEQUENCE_LENGTH)
    assert tokenizer.unk_token_id not in ids[0].tolist() and tokenizer.unk_token_id in ids[1].tolist()


def test_sigmas_follow_the_shifted_logit_normal_density():
    sigmas = sample_sigmas(20_000, flow_models.build_flow_scheduler(), torch.Generator().manual_seed(0))
    assert float(sigmas.min()) > 0 and float(sigmas.max()) < 1
    assert 0.7 < float(sigmas.median()) < 0.8  # shift 3 moves the logit-normal median 0.5 to 0.75
