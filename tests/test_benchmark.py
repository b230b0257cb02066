"""The benchmark's pure helpers (no model, no Ray, no timing): workload building and the results writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jobs.benchmark import Row, results_dict, write_json
from jobs.harness.audio import build_long_form, spread, write_wav
from rayscribe.audio import SAMPLE_RATE, decode_audio


def _row(scenario: str, contender: str, layout: str, wall: float) -> Row:
    return Row(scenario=scenario, contender=contender, layout=layout, files=1, audio_seconds=100.0,
               startup_seconds=1.0, wall_seconds=wall, peak_rss_mb=300.0, cpu_seconds=2 * wall, wer=0.05)


def test_benchmark_helpers(tmp_path: Path) -> None:
    tone = np.sin(np.linspace(0, 440 * 2 * np.pi, SAMPLE_RATE)).astype(np.float32) * 0.5  # 1 s
    clips = [(tone, "alpha beta"), (tone[: SAMPLE_RATE // 2], "gamma"), (tone, " delta ")]

    audio, reference = build_long_form(clips, 10.0, gap=0.5, seed=1)
    assert audio.dtype == np.float32 and audio.shape[0] >= 10 * SAMPLE_RATE
    words = reference.split()
    # whole rounds, each a shuffle of every clip, the last round cut where the length was reached
    everything = ["alpha", "beta", "delta", "gamma"]
    assert sorted(words[:4]) == sorted(words[4:8]) == everything and len(words) > 8
    assert words.count("alpha") == words.count("beta")
    # the reference names exactly the clips that went in, each followed by a 0.5 s gap
    seconds = 1.5 * words.count("alpha") + 1.0 * words.count("gamma") + 1.5 * words.count("delta")
    assert abs(audio.shape[0] / SAMPLE_RATE - seconds) < 1e-3
    again, same = build_long_form(clips, 10.0, gap=0.5, seed=1)
    assert same == reference and np.array_equal(again, audio)

    wav = tmp_path / "long.wav"
    write_wav(wav, audio)
    decoded = decode_audio(wav)
    assert decoded.shape[0] == audio.shape[0]
    assert np.abs(decoded - audio).max() < 1e-3

    assert spread(list(range(42)), 10) == [0, 4, 8, 12, 16, 21, 25, 29, 33, 37]
    assert spread([1, 2], 5) == [1, 2]

    rows = [
        _row("long_form", "faster-whisper", "1 process x 2 threads", 4.0),
        _row("long_form", "rayscribe", "1x2", 5.0),
        _row("long_form", "rayscribe", "2x1", 8.0),
        _row("short_files", "faster-whisper", "1 process x 2 threads", 20.0),
        _row("short_files", "rayscribe", "1x2", 8.0),
    ]
    results = results_dict(rows, {"cpu": "test"}, {"model": "tiny.en", "threads": 2, "batch_size": 8})
    out = tmp_path / "nested" / "benchmark.json"
    write_json(out, results)
    loaded = json.loads(out.read_text())
    assert set(loaded) == {"machine", "settings", "rows", "ratios"}
    assert {"scenario", "contender", "layout", "files", "audio_seconds", "startup_seconds", "wall_seconds",
            "peak_rss_mb", "cpu_seconds", "wer", "speed_x_real_time"} <= set(loaded["rows"][0])
    assert loaded["rows"][0]["speed_x_real_time"] == 25.0
    long_form, short = loaded["ratios"]["long_form"], loaded["ratios"]["short_files"]
    assert long_form["by_layout"] == {"1x2": 0.8, "2x1": 0.5}
    assert long_form["best_layout"] == "1x2" and long_form["met"] is False
    assert long_form["cpu_by_layout"] == {"1x2": 0.8, "2x1": 0.5}
    assert short["best"] == 2.5 and short["met"] is True and short["target"] == 2.0


def test_queue_ratio_compares_whole_commands() -> None:
    from jobs.bench_queue import queue_ratio

    rows = [Row(scenario="queue_vs_batch", contender="rayscribe worker", layout="2 wkr", files=42,
                audio_seconds=283.0, startup_seconds=0.0, wall_seconds=42.0, peak_rss_mb=0.0, cpu_seconds=0.0,
                wer=0.05),
            Row(scenario="queue_vs_batch", contender="rayscribe transcribe", layout="2 wkr", files=42,
                audio_seconds=283.0, startup_seconds=0.0, wall_seconds=28.0, peak_rss_mb=0.0, cpu_seconds=0.0,
                wer=0.04)]
    ratio = queue_ratio(rows)["queue_vs_batch"]
    assert ratio["queue_over_batch"] == 1.5 and ratio["met"] is False
    assert ratio["queue_wer"] == 0.05 and ratio["batch_wer"] == 0.04
    assert "queue_vs_batch" in results_dict(rows, {}, {})["ratios"]
    assert queue_ratio(rows[:1]) == {}


def test_command_ratio_compares_whole_commands_against_both_direct_runs() -> None:
    from jobs.bench_longform import command_ratio

    def command_row(name: str, wall: float) -> Row:
        return Row(scenario="long_form_command", contender="x", layout=name, files=1, audio_seconds=1620.0,
                   startup_seconds=0.0, wall_seconds=wall, peak_rss_mb=0.0, cpu_seconds=0.0, wer=0.09)

    rows = [command_row("direct", 45.0), command_row("rayscribe_no_warm_pool", 60.0),
            command_row("rayscribe_cold", 60.0), command_row("rayscribe_warm", 40.0),
            command_row("direct_again", 55.0)]
    ratio = command_ratio(rows)["long_form_command"]
    assert ratio["by_run"] == {"rayscribe_no_warm_pool": 0.833, "rayscribe_cold": 0.833, "rayscribe_warm": 1.25}
    assert ratio["cold"] == 0.833 and ratio["warm"] == 1.25 and ratio["met"] is True
    assert ratio["direct_wall_seconds"] == [45.0, 55.0] and ratio["direct_spread"] == 0.2
    assert "long_form_command" in results_dict(rows, {}, {})["ratios"]
    assert command_ratio(rows[1:4]) == {}
