"""A tiny random-weight Voxtral, saved as a model folder the real loading code reads: a stand-in for tests,
benchmarks and demos on machines that can't fetch ``mistralai/Voxtral-Mini-3B-2507``.

Everything but the sizes is real: the tokenizer is mistral-common's shipped Tekken vocabulary made a Voxtral one
(version v7, an ``audio`` section, the audio special tokens with ``[AUDIO]`` at id 24 as the processor assumes),
the feature extractor is Whisper's with 128 mel bins, and the model is a ``VoxtralConfig`` with a few tiny
layers. Its words are random; its shapes, token limits and code paths are those of the real model.

Usage: ``python -m rayscribe.engines.voxtral_tiny DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The special tokens of Voxtral's tokenizer that the prompt builders use; the other ranks are fillers.
_SPECIAL = {
    0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 5: "[AVAILABLE_TOOLS]", 6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]", 8: "[/TOOL_RESULTS]", 9: "[TOOL_CALLS]", 10: "[IMG]", 11: "<pad>", 12: "[IMG_BREAK]",
    13: "[IMG_END]", 14: "[PREFIX]", 15: "[MIDDLE]", 16: "[SUFFIX]", 17: "[SYSTEM_PROMPT]", 18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]", 20: "[ARGS]", 21: "[CALL_ID]", 24: "[AUDIO]", 25: "[BEGIN_AUDIO]", 34: "[TRANSCRIBE]",
}
AUDIO_TOKEN_ID = 24
TINY_CONTEXT = 1024  # two 30 s windows (750 audio tokens) beside a short answer


def tokenizer_json() -> dict:
    """mistral-common's ``tekken_240911.json`` turned into a Voxtral tokenizer file."""
    import mistral_common

    source = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    data["config"]["version"] = "v7"
    data["special_tokens"] = [{"rank": i, "token_str": _SPECIAL.get(i, f"<SPECIAL_{i}>"), "is_control": True}
                              for i in range(max(_SPECIAL) + 1)]
    data["audio"] = {"sampling_rate": 16000, "frame_rate": 12.5, "chunk_length_s": 30.0,
                     "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400}}
    return data


def build_tiny_voxtral(out: Path, *, seed: int = 0, hidden: int = 16, layers: int = 1) -> Path:
    """Write a tiny Voxtral model folder (config, weights, tekken.json, preprocessor config) to ``out``."""
    import tempfile

    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration, VoxtralProcessor, WhisperFeatureExtractor
    from transformers.tokenization_mistral_common import MistralCommonTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = tokenizer_json()
    with tempfile.TemporaryDirectory() as scratch:  # save_pretrained copies the file; it can't be its own target
        tekken = Path(scratch) / "tekken.json"
        tekken.write_text(json.dumps(data), encoding="utf-8")
        processor = VoxtralProcessor(
            WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30,
                                    n_fft=400),
            MistralCommonTokenizer(tokenizer_path=str(tekken)),
        )
        processor.save_pretrained(out)
    config = VoxtralConfig(
        audio_config={"hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
                      "num_attention_heads": 2, "num_mel_bins": 128, "max_source_positions": 1500},
        text_config={"vocab_size": data["config"]["default_vocab_size"], "hidden_size": hidden,
                     "intermediate_size": 2 * hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "head_dim": hidden // 2, "max_position_embeddings": TINY_CONTEXT},
        audio_token_id=AUDIO_TOKEN_ID,
    )
    torch.manual_seed(seed)
    VoxtralForConditionalGeneration(config).save_pretrained(out)
    return out


if __name__ == "__main__":  # pragma: no cover
    print(build_tiny_voxtral(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-voxtral")))
