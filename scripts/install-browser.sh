#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (tests/test_web_ui.py); does nothing when both are
# there. Needs root or password-less sudo. Playwright's own browser download is not used: it may be unreachable.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version && chromedriver --version
