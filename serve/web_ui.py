"""The web page at ``/``: a small HTML/CSS/JavaScript client of this same API, for trying rayscribe in a browser.

The page is static (``serve/web/``, shipped as package data; no build step, no CDN, so it works offline) and holds
no privileges of its own: it calls ``/v1/...`` from the browser like any client, so the API's key check, upload
limit and error answers apply unchanged. Only the language list is filled in here, from the one list the API's
own check uses (:data:`rayscribe.config.checks.LANGUAGE_NAMES`). ``RAYSCRIBE_WEB_UI=false`` leaves the routes
out, so ``/`` answers the app's usual 404.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from rayscribe.config.checks import LANGUAGE_NAMES

WEB_DIR = Path(__file__).resolve().parent / "web"
_LANGUAGES_MARK = "<!--LANGUAGE_OPTIONS-->"

# Same-origin only: the page loads its own script and style and talks to its own API; nothing else.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self' data:; media-src 'self' blob:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=1)
def page_html() -> str:
    """``index.html`` with the language choices filled in (code and name, in the API's order)."""
    options = "\n".join(f'<option value="{html.escape(code)}">{html.escape(name.title())} ({html.escape(code)})'
                        "</option>" for code, name in LANGUAGE_NAMES.items())
    return (WEB_DIR / "index.html").read_text(encoding="utf-8").replace(_LANGUAGES_MARK, options)


router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(page_html(), headers=SECURITY_HEADERS)


def install_web_ui(api: FastAPI, enabled: bool) -> None:
    """Add the page (``/``) and its files (``/web/...``) to ``api`` when ``enabled``."""
    if not enabled:
        return
    api.include_router(router)
    api.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
