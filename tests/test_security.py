"""Security checks: API keys are enforced in every form a client might try, secrets never show in output, logs
or error answers, and output locations can't leave the folder they name (queue and batch paths).

The basic 401s (no key, a wrong key through the ``openai`` client, /v1/models without a key) are in
test_serve_errors.py; the cases here are the ones it leaves out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rayscribe.errors import SettingsError
from rayscribe.file_jobs import discover_inputs
from rayscribe.formatters import output_paths
from rayscribe.queue.jobspec import JobSpec, JobSpecError, output_base, parse_job, salvage
from tests.conftest import RayCluster
from tests.fixtures_serve import APP_NAME, ServeApp, ServeInstance, deploy
from tests.speech import REPO, SAMPLES

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
KEY_A = "sk-SECRET-alpha-7f3c91d2e8"
KEY_B = "sk-SECRET-bravo-0b5a64c1fe"
HF_SECRET = "hf_SECRETtokenQ8v2LmZx4"
SECRETS = (KEY_A, KEY_B, HF_SECRET)
CLIP = SAMPLES / "LJ001-0001.wav"


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    for secret in SECRETS:
        for form in {secret, secret[6:], secret[-12:]}:  # also no tell-tale part of one
            assert form.encode() not in data, f"a secret ({secret[:6]}...) appears in {where}"


# ------------------------------------------------------------------------------------- API keys (HTTP)


@pytest.fixture(scope="module")
def keyed_app(serve_instance: ServeInstance) -> Iterator[ServeApp]:
    """The app with two keys and an HF token configured: what an operator's deployment looks like."""
    from ray import serve

    app = deploy(serve_instance, api_key=f"{KEY_A}, {KEY_B}", hf_token=HF_SECRET)
    yield app
    serve.delete(APP_NAME)


def _post(app: ServeApp, headers: dict[str, str], **kwargs: object) -> httpx.Response:
    return httpx.post(f"{app.base_url}/v1/audio/transcriptions", headers=headers,
                      files={"file": (CLIP.name, CLIP.read_bytes(), "audio/wav")}, data={"model": "whisper-1"},
                      timeout=120, **kwargs)  # type: ignore[arg-type]


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message", "type", "param", "code"]
    assert body["error"]["code"] == code and body["error"]["type"] == "invalid_request_error"
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_secret(response.content + str(response.headers).encode(), "a 401 answer")


@pytest.mark.parametrize(("header", "code"), [
    (f"Basic {KEY_A}", "missing_api_key"),        # another scheme
    (KEY_A, "missing_api_key"),                   # no scheme at all
    ("Bearer", "missing_api_key"),                # the scheme without a key
    (f"Bearer {KEY_A[:-1]}", "invalid_api_key"),  # a prefix of a real key
    (f"Bearer {KEY_A}x", "invalid_api_key"),      # a real key plus more
    (f"Bearer {KEY_A},{KEY_B}", "invalid_api_key"),  # the configured list itself
    (f"Bearer {KEY_A.upper()}", "invalid_api_key"),  # keys are case-sensitive
])
def test_near_miss_keys_are_refused(keyed_app: ServeApp, header: str, code: str) -> None:
    _refused(_post(keyed_app, {"Authorization": header}), code)


def test_keys_elsewhere_are_refused_and_every_v1_route_is_guarded(keyed_app: ServeApp) -> None:
    url = keyed_app.base_url
    _refused(_post(keyed_app, {}, params={"api_key": KEY_A}), "missing_api_key")  # a query parameter is no key
    _refused(_post(keyed_app, {"X-API-Key": KEY_A}), "missing_api_key")
    wrong = {"Authorization": "Bearer sk-wrong"}
    for path in ("/v1/models", "/v1/models/whisper-1", "/v1/no-such-route"):
        _refused(httpx.get(f"{url}{path}", headers=wrong, timeout=30), "invalid_api_key")


def test_each_configured_key_works(keyed_app: ServeApp) -> None:
    for key in (KEY_A, KEY_B):
        response = _post(keyed_app, {"Authorization": f"bearer  {key}"})  # scheme in any case, spaces trimmed
        assert response.status_code == 200, response.text
        assert "printing" in response.json()["text"].lower()
        assert_no_secret(response.content + str(response.headers).encode(), "a 200 answer")


def test_no_secret_in_answers_or_in_the_clusters_logs(keyed_app: ServeApp, ray_cluster: RayCluster) -> None:
    """Error answers, health, the schema, and every log file of the Ray session the app ran in."""
    url, good = keyed_app.base_url, {"Authorization": f"Bearer {KEY_A}"}
    answers = [
        httpx.get(f"{url}/health", timeout=30), httpx.get(f"{url}/openapi.json", timeout=30),
        httpx.get(f"{url}/v1/models", headers=good, timeout=30),
        httpx.get(f"{url}/v1/models/not-a-model", headers=good, timeout=30),
        httpx.post(f"{url}/v1/audio/transcriptions", headers=good, data={"model": "whisper-1"}, timeout=30),
        httpx.post(f"{url}/v1/audio/transcriptions", headers=good, timeout=30,
                   files={"file": ("x.wav", b"RIFF....WAVEfmt ", "audio/wav")}, data={"model": "whisper-1"}),
    ]
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 200, 200, 404, 400, 400], statuses
    for response in answers:
        assert_no_secret(response.content + str(response.headers).encode(), f"{response.request.url}")
    logs = Path(ray_cluster.temp_dir) / "session_latest" / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files, f"no Ray logs under {logs}"
    for path in files:
        assert_no_secret(path.read_bytes(), str(path))


# ------------------------------------------------------------------------------ secrets in settings and CLI


def test_settings_errors_never_echo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.config.serve import load_serve_settings
    from rayscribe.config.settings import load_settings

    monkeypatch.setenv("RAYSCRIBE_API_KEYS", KEY_A)
    monkeypatch.setenv("RAYSCRIBE_HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("RAYSCRIBE_BATCH_SIZE", "0")
    monkeypatch.setenv("RAYSCRIBE_MIN_REPLICAS", "5")
    monkeypatch.setenv("RAYSCRIBE_MAX_REPLICAS", "1")
    monkeypatch.setenv("RAYSCRIBE_HEARTBEAT_SECONDS", "900")
    for load in (load_settings, load_serve_settings, load_queue_settings):
        with pytest.raises(SettingsError) as info:
            load()
        assert_no_secret(str(info.value), f"{load.__name__}'s error")
    # A secret given with the wrong type is named, not shown.
    with pytest.raises(SettingsError, match="RAYSCRIBE_HF_TOKEN:") as info:
        load_settings(batch_size=8, hf_token=[HF_SECRET])
    assert_no_secret(str(info.value), "the hf_token error")
    with pytest.raises(SettingsError, match="RAYSCRIBE_API_KEYS:") as info:
        load_serve_settings(min_replicas=1, api_keys={"key": KEY_B})
    assert_no_secret(str(info.value), "the api_keys error")
    monkeypatch.setenv("RAYSCRIBE_BATCH_SIZE", "8")
    settings = load_settings()
    assert_no_secret(repr(settings) + str(settings), "the settings' repr")
    monkeypatch.setenv("RAYSCRIBE_MIN_REPLICAS", "1")
    serve_settings = load_serve_settings()
    assert_no_secret(repr(serve_settings) + serve_settings.model_dump_json(), "the serve settings' repr and JSON")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    secrets_env = {"RAYSCRIBE_API_KEYS": f"{KEY_A},{KEY_B}", "RAYSCRIBE_HF_TOKEN": HF_SECRET,
                   "RAYSCRIBE_LOG_LEVEL": "DEBUG"}
    return subprocess.run([RAYSCRIBE, *args], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **secrets_env, **env})


def test_cli_output_and_errors_never_show_secrets(tmp_path: Path) -> None:
    shown = _cli("settings")
    assert shown.returncode == 0, shown.stderr
    assert "RAYSCRIBE_HF_TOKEN=***" in shown.stdout
    config = _cli("serve", "--print-config")
    assert config.returncode == 0, config.stderr
    runs = [
        shown, config,
        _cli("settings", RAYSCRIBE_BATCH_SIZE="0"),                                   # a settings error
        _cli("serve", "--print-config", RAYSCRIBE_MIN_REPLICAS="9"),                  # a serve settings error
        _cli("transcribe", str(tmp_path / "missing.wav"), "--out", str(tmp_path)),   # an input error
        _cli("status", "some-job", "--out", str(tmp_path)),                           # a queue command
    ]
    assert [r.returncode for r in runs[2:5]] == [2, 2, 2], [r.stderr for r in runs]
    for run in runs:
        assert "Traceback" not in run.stderr
        assert_no_secret(run.stdout + run.stderr, f"`rayscribe {' '.join(run.args[1:])}`")


# --------------------------------------------------------------------- output locations stay in their folder

OUT = "s3://bucket/transcripts/"
ESCAPES = [
    "s3://bucket/transcripts/../other/",
    "s3://bucket/../transcripts/",
    "s3://bucket/transcripts/./x/",
    "s3://bucket//transcripts/",
    "s3://bucket/transcripts//x/",
    "s3://bucket/transcripts\\..\\other/",
    "s3://bucket/transcripts/%2e%2e/other/",
    "s3://bucket/transcripts/%2E%2E%2Fother/",
    "s3://bucket/transcripts/..%2fother.json",
    "s3://bucket/transcripts/%5cx/",
    "s3://bucket/transcripts/\x00/",
    "/srv/out/../../etc/",
    "../outside/",
    "/srv/out/..",
]


@pytest.mark.parametrize("location", ESCAPES)
def test_queue_locations_that_could_escape_are_refused(location: str) -> None:
    for field, other in (("s3_output_path", "s3_input_path"), ("s3_input_path", "s3_output_path")):
        body = {"job_id": "j1", field: location, other: "s3://bucket/in/a.wav"}
        with pytest.raises(JobSpecError, match=field):
            parse_job(json.dumps(body))
    # The worker writes an invalid message's error record where salvage() says: never to such a location.
    assert salvage(json.dumps({"job_id": "j1", "s3_output_path": location})) == {"job_id": "j1"}


@pytest.mark.parametrize("job_id", ["../x", "..", ".", "a/b", "a\\b", "/abs", "%2e%2e", "a\nb", "ab\n", "x" * 129])
def test_job_ids_that_could_escape_are_refused(job_id: str) -> None:
    with pytest.raises(JobSpecError, match="job_id"):
        parse_job(json.dumps({"job_id": job_id, "s3_input_path": "s3://b/a.wav", "s3_output_path": OUT}))
    with pytest.raises(JobSpecError, match="job id"):
        output_base(OUT, job_id)  # `rayscribe status` passes ids from the command line straight here


@pytest.mark.parametrize(("location", "job_id", "base"), [
    (OUT, "a..b", "s3://bucket/transcripts/a..b"),
    ("s3://bucket/transcripts", "j", "s3://bucket/transcripts/j"),
    ("s3://bucket/transcripts/talk.json", "j", "s3://bucket/transcripts/talk"),
    ("s3://bucket/a...b/", "j.1", "s3://bucket/a...b/j.1"),
    ("/srv/out/", "j_2", "/srv/out/j_2"),
])
def test_plain_locations_still_work_and_stay_in_their_folder(location: str, job_id: str, base: str) -> None:
    spec = JobSpec(job_id=job_id, s3_input_path="s3://bucket/in/a.wav", s3_output_path=location)
    assert output_base(spec.s3_output_path, spec.job_id) == base


def test_batch_outputs_stay_in_the_output_folder(tmp_path: Path) -> None:
    """Odd file names become odd output names, inside the output folder; a stem that would leave it is refused."""
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    names = ["..mp3", "...mp3", "a\\..\\..\\b.mp3", "%2e%2e%2fc.mp3", "sub/..wav", " .mp3"]
    for name in names:
        (inputs / name).write_bytes(b"")
    out = tmp_path / "out"
    found = discover_inputs([inputs])
    assert len(found) == len(names)
    for entry in found:
        for path in output_paths(out, entry.stem, ["txt", "srt", "json"]).values():
            assert path.resolve().is_relative_to(out.resolve()), (entry.stem, path)
    for stem in ("../x", "a/../../x", "/etc/x", "sub/../../x"):
        with pytest.raises(ValueError, match="would leave the output folder"):
            output_paths(out, stem, ["txt"])
