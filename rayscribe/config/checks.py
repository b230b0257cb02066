"""The checks that settings, queue messages and the HTTP API share, so one value is accepted or refused alike
everywhere: a language code (:func:`check_language_code`) and a list of output formats
(:func:`check_output_formats`). Each raises :class:`ValueError`, which pydantic reports against the field.
"""

from __future__ import annotations

from collections.abc import Sequence

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json", "verbose_json")

# Whisper's language codes and the lower-case English names OpenAI reports in verbose_json.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish",
    "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian",
    "hi": "hindi", "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek",
    "ms": "malay", "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil",
    "no": "norwegian", "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian",
    "lt": "lithuanian", "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian",
    "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic",
    "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht": "haitian creole",
    "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit",
    "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy",
    "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}


def check_language_code(value: str | None) -> str | None:
    """A language code Whisper knows, in lower case; ``None`` stays ``None``.

    :raises ValueError: for anything else (a name such as ``english``, a made-up code), asking for an ISO 639-1
        code.
    """
    if value is None:
        return None
    code = value.strip().lower()
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unsupported language {value!r}; use an ISO 639-1 code such as en, de or fr")
    return code


def check_output_formats(value: Sequence[str]) -> list[str]:
    """The formats without repeats, in the order given.

    :raises ValueError: naming unknown formats, or saying that at least one is needed, with the allowed ones.
    """
    bad = [v for v in value if v not in OUTPUT_FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; allowed: {', '.join(OUTPUT_FORMATS)}")
    if not value:
        raise ValueError(f"at least one format is needed; allowed: {', '.join(OUTPUT_FORMATS)}")
    return list(dict.fromkeys(value))
