"""The web page at ``/`` in a real browser (Debian's Chromium through selenium) against the real app and model.

One browser for the session and one deployment (with the test key) for the module. The page is judged by what a
person sees: streamed segments that appear while the response is still coming, the final text equal to the API's
own answer, a downloadable SRT equal to the API's SRT, readable 400/401 messages, and the health strip. The page's
own subtitle formatter (serve/web/formats.js) is compared with rayscribe/formatters.py on tricky transcripts.

Chromium and chromedriver come from apt (``scripts/install-browser.sh``, run by ``.ci/run``). Where they are
missing the tests fail, naming the fix; ``SKIP_BROWSER_TESTS=1`` skips them on a developer's machine, never in CI.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import srt

from jobs.harness.audio import wav_bytes
from rayscribe.audio import decode_audio
from rayscribe.formatters import format_transcript
from rayscribe.transcript import Segment, Transcript, Word
from tests.fixtures_serve import APP_NAME, TEST_KEY, ServeApp, ServeInstance, deploy
from tests.speech import references, require_speech

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
WAIT_S = 120.0


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    message = (f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} not found): "
               "run scripts/install-browser.sh")
    if os.environ.get("SKIP_BROWSER_TESTS") == "1" and not os.environ.get("CI"):
        pytest.skip(message + " (skipped: SKIP_BROWSER_TESTS=1)")
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-downloads")


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[Any]:
    """Headless Chromium, its driver given by path (so selenium never looks for one online)."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1300", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def web_app(serve_instance: ServeInstance) -> Iterator[ServeApp]:
    from ray import serve

    app = deploy(serve_instance)  # with TEST_KEY: the page must ask for it
    yield app
    serve.delete(APP_NAME)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk (11 s: one stream span, so its streamed text is the API's plain answer), a 40 s clip made of
    LJSpeech clips (two spans: segments arrive while the response goes on) and a file that is not audio."""
    root = require_speech()
    folder = tmp_path_factory.mktemp("clips")
    names = sorted(references(str(root / "ljspeech")))[:6]
    long = folder / "ljspeech-40s.wav"
    long.write_bytes(wav_bytes(np.concatenate([decode_audio(root / "ljspeech" / n) for n in names])))
    notes = folder / "notes.txt"
    notes.write_text("these are meeting notes, not audio\n")
    jfk = folder / "jfk.wav"
    shutil.copy(root / "jfk" / "jfk.wav", jfk)
    shutil.copy(jfk, folder / "jfk-words.wav")
    return {"jfk": jfk, "jfk-words": folder / "jfk-words.wav", "long": long, "notes": notes}


def _poll(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # polling interval, not synchronisation
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _open(driver: Any, app: ServeApp, key: str | None) -> None:
    from selenium.webdriver.common.by import By

    driver.get(app.base_url + "/")
    _poll(lambda: driver.find_element(By.ID, "status").get_attribute("data-state") != "unknown", "the status strip")
    key_row = driver.find_element(By.ID, "key-row")
    _poll(key_row.is_displayed, "the API key field (the server has keys)")
    if key is not None:
        driver.find_element(By.ID, "key").send_keys(key)


def _submit(driver: Any, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in paths))
    driver.find_element(By.ID, "go").click()


_CARDS = """return Array.from(document.querySelectorAll('#results .card')).map(c => ({
  name: c.querySelector('.name').textContent, state: c.dataset.state, count: c.querySelectorAll('.segment').length,
  message: c.querySelector('.message').hidden ? '' : c.querySelector('.message').textContent,
  texts: Array.from(c.querySelectorAll('.seg-text')).map(s => s.textContent),
  facts: Object.fromEntries(Array.from(c.querySelectorAll('.facts dd')).map(d => [d.className, d.textContent]))}));"""


def _cards(driver: Any) -> list[dict[str, Any]]:
    return list(driver.execute_script(_CARDS))


def _finished(driver: Any, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        cards = _cards(driver)
        return cards if len(cards) == count and all(c["state"] in ("done", "error") for c in cards) else None

    return list(_poll(check, f"{count} finished card(s)"))


def _api(app: ServeApp, path: Path, fmt: str) -> httpx.Response:
    response = httpx.post(f"{app.base_url}/v1/audio/transcriptions", timeout=120,
                          headers={"Authorization": f"Bearer {TEST_KEY}"},
                          files={"file": (path.name, path.read_bytes(), "audio/wav")},
                          data={"model": "whisper-1", "response_format": fmt})
    assert response.status_code == 200, response.text
    return response


def test_health_strip_and_the_key_field(browser: Any, web_app: ServeApp) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, web_app, key=None)
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("data-state") == "healthy", status.text
    assert status.text.startswith("Healthy") and "CPU" in status.text and "whisper-1" in status.text
    assert "whisper 1" in status.text  # replicas
    assert browser.find_element(By.ID, "key").get_attribute("type") == "password"
    # keyboard: the controls are reachable with Tab and each has a label
    for control in ("files", "model", "language", "task", "format", "stream", "words", "key", "go"):
        element = browser.find_element(By.ID, control)
        assert element.get_attribute("tabindex") in (None, "0")
        labels = browser.execute_script("return arguments[0].labels.length", element)
        assert control == "go" or labels == 1, control


def test_wrong_key_shows_401_then_the_right_key_works(browser: Any, web_app: ServeApp,
                                                      clips: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, web_app, key="sk-wrong")
    _submit(browser, clips["jfk"])
    (card,) = _finished(browser, 1)
    assert card["state"] == "error" and card["message"].startswith("401: Incorrect API key provided."), card
    key = browser.find_element(By.ID, "key")
    key.clear()
    key.send_keys(TEST_KEY)
    browser.find_element(By.ID, "go").click()
    cards = _finished(browser, 2)
    assert cards[1]["state"] == "done" and "ask not what your country" in " ".join(cards[1]["texts"]).lower()


def test_non_audio_shows_the_400_message(browser: Any, web_app: ServeApp, clips: dict[str, Path]) -> None:
    _open(browser, web_app, key=TEST_KEY)
    _submit(browser, clips["notes"])
    (card,) = _finished(browser, 1)
    assert card["state"] == "error", card
    assert card["message"].startswith("400: Invalid file format") and "wav or webm" in card["message"]


def test_too_large_shows_the_413_message(browser: Any, web_app: ServeApp, tmp_path: Path) -> None:
    """Over the app's 4 MB limit: the API refuses before reading the body, and the page says so."""
    big = tmp_path / "too-big.wav"
    big.write_bytes(wav_bytes(np.zeros(16_000 * 140, dtype=np.float32)))  # 4.5 MB of silence
    _open(browser, web_app, key=TEST_KEY)
    _submit(browser, big)
    (card,) = _finished(browser, 1)
    assert card["state"] == "error", card
    assert card["message"].startswith("413: the uploaded file is too large: the limit is 4 MB"), card


def test_translate_without_the_route_or_model_is_a_readable_error(browser: Any, web_app: ServeApp,
                                                                  clips: dict[str, Path]) -> None:
    """tiny.en cannot translate: the page says why (404 while the server has no translations route; the
    API's 400 once it has one)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    _open(browser, web_app, key=TEST_KEY)
    assert "English-only" in browser.find_element(By.ID, "task-hint").text
    Select(browser.find_element(By.ID, "task")).select_by_value("translate")
    _submit(browser, clips["jfk"])
    (card,) = _finished(browser, 1)
    assert card["state"] == "error", card
    assert card["message"].startswith(("404: this server does not offer translation", "400: ")), card


def test_streamed_segments_text_and_srt_download(browser: Any, web_app: ServeApp, clips: dict[str, Path],
                                                 downloads: Path, tmp_path: Path) -> None:
    """Two files at once. jfk: text and SRT equal to the API's. The 40 s clip: segments show while its response
    is still streaming (it is decoded in two spans), then it finishes with the facts filled in."""
    from selenium.webdriver.common.by import By

    _open(browser, web_app, key=TEST_KEY)
    _submit(browser, clips["jfk"], clips["long"])

    def streaming_with_segments() -> bool:
        cards = _cards(browser)
        return len(cards) == 2 and cards[1]["state"] == "streaming" and cards[1]["count"] >= 1

    _poll(streaming_with_segments, "segments of the long clip shown while its response is still streaming")
    jfk_card, long_card = _finished(browser, 2)

    assert jfk_card["state"] == "done", jfk_card
    api_text = _api(web_app, clips["jfk"], "json").json()["text"]
    assert " ".join(jfk_card["texts"]) == api_text
    facts = jfk_card["facts"]
    assert facts["language"].startswith("english") and facts["model"].startswith("whisper-1")
    assert facts["duration"] == "11.00 s" and "× real time" in facts["speed"]

    assert long_card["state"] == "done" and long_card["count"] >= 2, long_card
    assert float(long_card["facts"]["duration"].split()[0]) > 35

    card = browser.find_elements(By.CSS_SELECTOR, "#results .card")[0]
    card.find_element(By.CSS_SELECTOR, '.downloads button[data-format="srt"]').click()
    path = downloads / "jfk.srt"
    _poll(lambda: path.exists() and path.stat().st_size > 0, "the downloaded jfk.srt", timeout=30)
    # A stream has no word times, so its cues are the server's formatter on the API's segments without words
    verbose = _api(web_app, clips["jfk"], "verbose_json").json()
    segments = [Segment(id=s["id"], start=s["start"], end=s["end"], text=s["text"]) for s in verbose["segments"]]
    expected = format_transcript(Transcript(segments, "en", verbose["duration"]), "srt")
    assert _cues(path.read_text(encoding="utf-8")) == _cues(expected)
    assert " ".join(c[2].replace("\n", " ") for c in _cues(expected)) == api_text

    browser.save_screenshot(str(tmp_path / "web-ui.png"))
    assert (tmp_path / "web-ui.png").stat().st_size > 10_000


def _cues(text: str) -> list[tuple[Any, Any, str]]:
    cues = [(s.start, s.end, s.content) for s in srt.parse(text)]
    assert cues, text
    return cues


def test_word_timestamps_give_the_apis_own_srt(browser: Any, web_app: ServeApp, clips: dict[str, Path],
                                                downloads: Path) -> None:
    """With word times (a whole verbose_json answer) the page cuts long segments as the server does: its SRT
    download is the API's SRT for the same clip."""
    from selenium.webdriver.common.by import By

    _open(browser, web_app, key=TEST_KEY)
    browser.find_element(By.ID, "words").click()
    _submit(browser, clips["jfk-words"])
    (card,) = _finished(browser, 1)
    assert card["state"] == "done" and card["facts"]["language"] == "english", card
    browser.find_element(By.CSS_SELECTOR, '#results .card .downloads button[data-format="srt"]').click()
    path = downloads / "jfk-words.srt"
    _poll(lambda: path.exists() and path.stat().st_size > 0, "the downloaded jfk-words.srt", timeout=30)
    theirs = _cues(_api(web_app, clips["jfk"], "srt").text)
    assert _cues(path.read_text(encoding="utf-8")) == theirs and len(theirs) > 1


def _tricky_transcripts() -> list[Transcript]:
    def words(text: str, start: float, step: float) -> list[Word]:
        return [Word(start=round(start + i * step, 3), end=round(start + (i + 1) * step, 3), word=f" {w}",
                     probability=0.9) for i, w in enumerate(text.split())]

    long_text = ("This sentence runs on for a long while, with clauses; more words. And then it keeps going "
                 "well past the limit of a cue so that it has to be cut somewhere sensible")
    return [
        Transcript(segments=[
            Segment(id=0, start=0.0, end=1.5, text=" Fish & <chips> --> now"),
            Segment(id=1, start=1.2, end=1.2, text=" overlap and zero length"),
            Segment(id=2, start=1.4, end=2.0125, text="  "),
            Segment(id=3, start=2.0, end=16.0, text=" " + long_text, words=words(long_text, 2.0, 0.4)),
            Segment(id=4, start=16.0, end=19.0, text=" ends past the duration"),
        ], language="en", duration=18.5),
        Transcript(segments=[Segment(id=0, start=0.0, end=2.0, text=" no duration known")], language="en",
                   duration=0.0),
        Transcript(segments=[], language="en", duration=3.0),
    ]


def test_the_pages_formatter_equals_the_servers(browser: Any, web_app: ServeApp) -> None:
    """serve/web/formats.js and rayscribe/formatters.py give the same txt, srt and vtt."""
    _open(browser, web_app, key=None)
    for transcript in _tricky_transcripts():
        data = transcript.to_dict()
        for fmt in ("txt", "srt", "vtt"):
            ours = browser.execute_script("return window.RayscribeFormats.format(arguments[0], arguments[1])",
                                          data, fmt)
            assert ours == format_transcript(transcript, fmt), (fmt, data)


def test_web_ui_off_answers_404_and_on_needs_no_key() -> None:
    """In-process ASGI: which routes exist needs no model."""
    from fastapi.testclient import TestClient

    from rayscribe.config.serve import load_serve_settings
    from rayscribe.config.settings import load_settings
    from serve.app import create_api
    from serve.service import TranscriptionService

    def client(**overrides: Any) -> TestClient:
        serve_settings = load_serve_settings(api_keys=TEST_KEY, **overrides)
        return TestClient(create_api(TranscriptionService(load_settings(), serve_settings, model=None)))

    with client() as on:
        page = on.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<option value="de">German (de)</option>' in page.text and "<!--" not in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
        for asset in ("app.js", "formats.js", "style.css"):
            assert on.get(f"/web/{asset}").status_code == 200
        assert on.get("/v1/models").status_code == 401  # the API keeps its key
    with client(web_ui=False) as off:
        for path in ("/", "/web/app.js"):
            response = off.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_translate_on_a_multilingual_model_shows_english(browser: Any, web_app: ServeApp,
                                                         serve_instance: ServeInstance) -> None:
    """With the default multilingual model (redeployed here, so this test comes after those on tiny.en), the
    page's translate choice streams English for a German clip, equal to the API's own translation, and names the
    language it heard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    from jobs.harness.multilingual import multilingual_dir

    german = multilingual_dir() / "de" / "fleurs_de_001.ogg"
    if not german.exists():
        pytest.skip(f"multilingual clips not found at {german.parent} (set RAYSCRIBE_MULTILINGUAL_DIR)")
    app = deploy(serve_instance, model="base", beam_size=1)  # the module's app, redeployed (deleted at its end)
    _open(browser, app, key=TEST_KEY)
    _poll(lambda: browser.find_element(By.ID, "task-hint").text == "", "the page to see a multilingual model")
    Select(browser.find_element(By.ID, "task")).select_by_value("translate")
    _submit(browser, german)
    (card,) = _finished(browser, 1)
    assert card["state"] == "done", card
    text = " ".join(card["texts"])
    api = httpx.post(f"{app.base_url}/v1/audio/translations", timeout=120,
                     headers={"Authorization": f"Bearer {TEST_KEY}"},
                     files={"file": (german.name, german.read_bytes(), "audio/ogg")},
                     data={"model": "whisper-1", "response_format": "json"})
    assert api.status_code == 200, api.text
    assert text == api.json()["text"]
    words = set(text.lower().replace(",", " ").replace(".", " ").split())
    assert "dinosaur" in words and text.isascii(), text  # English: the German says "dinosaurier", "großer"

    assert card["facts"]["language"].startswith("german"), card["facts"]
