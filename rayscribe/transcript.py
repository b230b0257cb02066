"""Transcription results as plain dataclasses, shared by every engine, formatter and sink."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One recognised word with its time span in seconds and the model's confidence."""

    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    """A stretch of speech: times in seconds from the start of the file, text, and its words."""

    id: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    speaker: str | None = None


@dataclass
class Transcript:
    """The result for one audio file."""

    segments: list[Segment]
    language: str
    duration: float
    language_probability: float = 1.0
    # The model that made this transcript, when an engine routes files between models (engines/routing.py).
    model: str | None = None

    @property
    def text(self) -> str:
        """The whole transcript as one string, segments joined by single spaces."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = [
            Segment(**{**{k: v for k, v in s.items() if k != "words"},
                       "words": [Word(**w) for w in s.get("words", [])]})
            for s in data["segments"]
        ]
        return cls(
            segments=segments,
            language=data["language"],
            duration=data["duration"],
            language_probability=data.get("language_probability", 1.0),
            model=data.get("model"),
        )
