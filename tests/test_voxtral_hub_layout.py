"""The real Voxtral's loading path as far as it goes offline: a folder laid out as the hub's
``mistralai/Voxtral-Mini-3B-2507`` (its config.json with the real sizes, preprocessor_config.json, generation
config and a Voxtral tekken.json; no weights, which can't be fetched here) read by the classes the engine and the
hub's own usage name. So the first real run meets no config, processor or tokenizer class the tiny model never
exercised: the sizes give the real parameter count and GPU memory need, the processor builds real requests, and
the missing weights end in the engine's own message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayscribe.audio import SAMPLE_RATE
from rayscribe.config.voxtral import DEFAULT_VOXTRAL_MODEL, load_voxtral_settings
from rayscribe.engines.voxtral_engine import GB, VoxtralEngine, count_parameters, memory_need_bytes
from rayscribe.errors import ModelNotAvailableError

pytestmark = pytest.mark.voxtral

# config.json of mistralai/Voxtral-Mini-3B-2507 (transformers' conversion): a Whisper-large-v3-sized audio
# encoder, a projector, and a Llama-architecture Ministral 3B text model.
HUB_CONFIG: dict[str, Any] = {
    "architectures": ["VoxtralForConditionalGeneration"],
    "audio_config": {
        "activation_dropout": 0.0, "activation_function": "gelu", "attention_dropout": 0.0, "dropout": 0.0,
        "head_dim": 64, "hidden_size": 1280, "initializer_range": 0.02, "intermediate_size": 5120,
        "layerdrop": 0.0, "max_source_positions": 1500, "model_type": "voxtral_encoder",
        "num_attention_heads": 20, "num_hidden_layers": 32, "num_key_value_heads": 20, "num_mel_bins": 128,
        "scale_embedding": False, "vocab_size": 51866,
    },
    "audio_token_id": 24,
    "hidden_size": 3072,
    "model_type": "voxtral",
    "projector_hidden_act": "gelu",
    "text_config": {
        "attention_bias": False, "attention_dropout": 0.0, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
        "num_hidden_layers": 30, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 100000000.0, "sliding_window": None, "use_cache": True,
        "vocab_size": 131072,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.54.0.dev0",
    "vocab_size": 131072,
}
HUB_PREPROCESSOR = {
    "chunk_length": 30, "dither": 0.0, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
    "padding_value": 0.0, "processor_class": "VoxtralProcessor", "return_attention_mask": False,
    "sampling_rate": 16000,
}
HUB_GENERATION = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 11, "transformers_version": "4.54.0.dev0"}


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="needs the voxtral extra")
    from rayscribe.engines.voxtral_tiny import tokenizer_json

    folder = tmp_path_factory.mktemp("hub") / "Voxtral-Mini-3B-2507"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(HUB_CONFIG))
    (folder / "preprocessor_config.json").write_text(json.dumps(HUB_PREPROCESSOR))
    (folder / "generation_config.json").write_text(json.dumps(HUB_GENERATION))
    (folder / "tekken.json").write_text(json.dumps(tokenizer_json()))
    return folder


def test_the_default_model_is_the_hub_model() -> None:
    assert DEFAULT_VOXTRAL_MODEL == "mistralai/Voxtral-Mini-3B-2507"


def test_the_hub_config_gives_the_real_classes_and_sizes(hub_folder: Path) -> None:
    import transformers
    from transformers import AutoConfig, LlamaConfig, VoxtralConfig, VoxtralEncoderConfig

    config = AutoConfig.from_pretrained(hub_folder)
    assert isinstance(config, VoxtralConfig)
    assert isinstance(config.text_config, LlamaConfig) and isinstance(config.audio_config, VoxtralEncoderConfig)
    assert getattr(transformers, config.architectures[0]) is transformers.VoxtralForConditionalGeneration
    parameters = count_parameters(config)  # built on torch's meta device: nothing allocated
    assert 4.5e9 < parameters < 4.8e9, parameters  # "Mini 3B": 3B text model + encoder + embeddings
    need = memory_need_bytes(parameters, 2, load_voxtral_settings().voxtral_memory_headroom_gb)
    assert 9 * GB < need < 16 * GB * 0.75  # fits a 16 GB T4 in float16 beside a Whisper worker


def test_the_hub_processor_and_tokenizer_classes_load(hub_folder: Path) -> None:
    from transformers import AutoProcessor, AutoTokenizer, VoxtralProcessor, WhisperFeatureExtractor
    from transformers.tokenization_mistral_common import MistralCommonTokenizer

    processor = AutoProcessor.from_pretrained(hub_folder)  # what the hub's model card uses
    assert isinstance(processor, VoxtralProcessor)
    assert isinstance(processor.feature_extractor, WhisperFeatureExtractor)
    assert processor.feature_extractor.feature_size == 128
    assert isinstance(processor.tokenizer, MistralCommonTokenizer)
    assert isinstance(AutoTokenizer.from_pretrained(hub_folder), MistralCommonTokenizer)
    assert isinstance(VoxtralProcessor.from_pretrained(hub_folder), VoxtralProcessor)  # what the engine uses


@pytest.mark.parametrize(("task", "prompt"), [("transcribe", None), ("summary", "Summarise the audio.")])
def test_the_hub_processor_builds_the_engines_requests(hub_folder: Path, task: str, prompt: str | None) -> None:
    from transformers import VoxtralProcessor

    engine: Any = object.__new__(VoxtralEngine)  # the request builder only: no weights to load
    engine.processor = VoxtralProcessor.from_pretrained(hub_folder)
    engine.settings = load_voxtral_settings(voxtral_model=str(hub_folder))
    audio = (0.1 * np.sin(np.linspace(0, 2000, 2 * SAMPLE_RATE))).astype(np.float32)
    inputs = engine._inputs(audio, task, prompt, "en" if task == "transcribe" else None)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(HUB_CONFIG["audio_token_id"]) == 375  # one 30 s window: 1500 encoder frames / 4
    assert tuple(inputs["input_features"].shape) == (1, 128, 3000)


def test_missing_weights_end_in_the_engines_message(hub_folder: Path) -> None:
    settings = load_voxtral_settings(voxtral_model=str(hub_folder), voxtral_device="cpu")
    with pytest.raises(ModelNotAvailableError) as caught:
        VoxtralEngine(settings)
    message = str(caught.value)
    assert "could not be loaded from a local folder" in message and "safetensors" in message
