"""What the soak sends: good clips (WAV and FLAC), corrupt inputs, malformed messages, and the feeder thread that
sends them while keeping the queues' backlog small."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jobs.harness.audio import flac_bytes, tone, wav_bytes
from jobs.soak.config import CLIP_SECONDS, HIGH_PRIORITY_EVERY, POLL, Entry, SoakConfig
from rayscribe.audio import decode_audio
from rayscribe.errors import AudioDecodeError
from rayscribe.queue.sqs import JobQueue, QueueError

log = logging.getLogger("rayscribe.soak")


def _wav_bytes(seconds: float, seed: int) -> bytes:
    return wav_bytes(tone(seconds, seed))


def _flac_bytes(wav: bytes) -> bytes:
    """``wav`` re-encoded as FLAC (the decode path then sees two containers)."""
    return flac_bytes(decode_audio(wav))



def good_clips() -> dict[str, tuple[bytes, float]]:
    """The good inputs: name -> (bytes, seconds); WAV and FLAC alternate."""
    clips = {}
    for i, seconds in enumerate(CLIP_SECONDS):
        wav = _wav_bytes(seconds, i)
        clips[f"clip{i}.{'flac' if i % 2 else 'wav'}"] = (_flac_bytes(wav) if i % 2 else wav, seconds)
    return clips


def corrupt_inputs(count: int, seed: int) -> dict[str, bytes]:
    """``count`` distinct inputs that :func:`decode_audio` rejects (each is checked): empty, text, random bytes,
    fake headers over garbage, truncated WAV and FLAC, a WAV header with no data."""
    wav = _wav_bytes(6.0, 99)
    flac = _flac_bytes(wav)
    data_at = wav.find(b"data")
    rng = np.random.default_rng(seed)
    makers: list[Callable[[int], tuple[str, bytes]]] = [
        lambda i: ("empty.wav", b""),
        lambda i: ("agenda.mp3", f"Not audio: meeting agenda item {i}.\n".encode() * 30),
        lambda i: ("noise.ogg", rng.integers(0, 256, 2048 + 97 * i, dtype=np.uint8).tobytes()),
        lambda i: ("id3.mp3", b"ID3\x04" + bytes(6) + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        lambda i: ("cut.wav", wav[: len(wav) // (3 + i % 3)]),
        lambda i: ("header-only.wav", wav[: data_at + 8]),
        lambda i: ("cut.flac", flac[: len(flac) // (4 + i % 3)]),
        lambda i: ("fake.flac", b"fLaC" + rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()),
    ]
    found: dict[str, bytes] = {}
    i = 0
    while len(found) < count:
        name, data = makers[i % len(makers)](i)
        i += 1
        try:
            decode_audio(data, name=name)
        except AudioDecodeError:
            found[f"corrupt-{len(found):02d}-{name}"] = data
        if i > 20 * count + 100:
            raise RuntimeError("could not make enough corrupt inputs")
    return found


def malformed_bodies(count: int, bucket: str, out: str) -> list[tuple[str, str | None]]:
    """``count`` malformed message bodies, with the job id where one is readable (its error record goes beside
    the would-be output)."""
    src = f"s3://{bucket}/soak/clip0.wav"

    def job(i: int, **fields: Any) -> str:
        return json.dumps({"job_id": f"malformed-{i:02d}", "s3_input_path": src, "s3_output_path": out, **fields})

    shapes: list[Callable[[int], tuple[str, str | None]]] = [
        lambda i: (f"{{this is not json {i}", None),
        lambda i: (f"[{i}, 2, 3]", None),
        lambda i: (f'"just a string {i}"', None),
        lambda i: (json.dumps({"hello": i}), None),
        lambda i: (json.dumps({"job_id": f"malformed-{i:02d}", "s3_output_path": out}), f"malformed-{i:02d}"),
        lambda i: (job(i, version=99), f"malformed-{i:02d}"),
        lambda i: (job(i, priority="whenever"), f"malformed-{i:02d}"),
        lambda i: (job(i, formats=["docx"]), f"malformed-{i:02d}"),
        lambda i: (job(i, language="english"), f"malformed-{i:02d}"),
        lambda i: (job(i, webhook_url="ftp://example.invalid/hook"), f"malformed-{i:02d}"),
        lambda i: (job(i, s3_input_path="ftp://example.invalid/a.wav"), f"malformed-{i:02d}"),
        lambda i: (json.dumps({"job_id": f"bad id {i}!", "s3_input_path": src, "s3_output_path": out}), None),
    ]
    return [shapes[i % len(shapes)](i) for i in range(count)]


def build_entries(config: SoakConfig, in_bucket: str, out: str) -> tuple[list[Entry], dict[str, bytes]]:
    """Every message of the run in send order (bad ones spread at random among the good), and the objects to
    upload to the input bucket (key -> bytes)."""
    rng = random.Random(config.seed)
    clips = good_clips()
    uploads = {f"soak/{name}": data for name, (data, _) in clips.items()}
    names = list(clips)
    entries: list[Entry] = []
    for n in range(config.jobs):
        name = names[n % len(names)]
        job_id = f"soak-{n:05d}"
        priority = "high" if n % HIGH_PRIORITY_EVERY == HIGH_PRIORITY_EVERY - 1 else "normal"
        body = json.dumps({"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/soak/{name}",
                           "s3_output_path": out, "priority": priority})
        entries.append(Entry("good", body, priority, job_id, clips[name][1]))
    bad: list[Entry] = []
    for i, (name, data) in enumerate(corrupt_inputs(config.corrupt, config.seed).items()):
        uploads[f"soak/{name}"] = data
        job_id = f"corrupt-{i:02d}"
        bad.append(Entry("corrupt", json.dumps({"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/soak/{name}",
                                                "s3_output_path": out}), job_id=job_id))
    bad += [Entry("malformed", body, job_id=job_id) for body, job_id in malformed_bodies(config.malformed, in_bucket,
                                                                                         out)]
    for entry in bad:
        entries.insert(rng.randrange(len(entries) + 1), entry)
    return entries, uploads


class Feeder(threading.Thread):
    """Sends the entries in order, keeping at most ``backlog`` messages visible across the two job queues. A
    send that fails (the outage) is tried again; the relay cuts connections before a request is answered, so a
    retried batch may have arrived once already: the workers' done markers make that harmless for jobs, and each
    entry counts the sends that carried it, since a malformed message sent twice is two dead letters."""

    def __init__(self, queue: JobQueue, entries: list[Entry], backlog: int) -> None:
        super().__init__(name="soak-feeder", daemon=True)
        self.queue = queue
        self.entries = entries
        self.backlog = backlog
        self.sent = 0
        self.resends = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        self.started_at = time.time()
        while self.sent < len(self.entries) and not self.stopping.is_set():
            try:
                waiting = sum(self.queue.counts(q)["visible"] for q in ("high", "normal"))
                room = self.backlog - waiting
                if room < min(10, self.backlog):
                    self.stopping.wait(POLL)
                    continue
                batch = self.entries[self.sent:self.sent + min(room, 10)]
                for which in ("high", "normal"):
                    group = [e for e in batch if e.queue == which and not e.sent]
                    if group:
                        for e in group:
                            e.sends += 1
                        self.queue.send(which, [e.body for e in group])
                        for e in batch:
                            if e.queue == which:
                                e.sent = True
                self.sent += len(batch)
            except QueueError as exc:
                self.resends += 1
                log.warning("feeder: %s; trying again", str(exc).splitlines()[0])
                self.stopping.wait(1.0)  # retry pacing while the endpoint is down
        self.finished_at = time.time()
