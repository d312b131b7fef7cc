"""The README's first command, run as a user would on the embedded default, serves a working platform."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.workers import wait_until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str):
    try:
        return requests.get(url, timeout=10)
    except requests.RequestException:
        return None


def test_first_readme_command_serves_the_platform_on_the_embedded_default(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    production = ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "STATIC_ROOT", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in production}
    env |= {"PLATFORM_VAR_DIR": str(tmp_path / "var"), "PORT": str(port), "VENV": sys.prefix}
    log_path = tmp_path / "platform.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/run-platform.sh"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        login = wait_until(
            lambda: (r := _get(f"{base}/login/")) is not None and r.status_code == 200 and r,
            timeout=300,
            interval=1,
            what=f"the login page (log: {log_path})",
        )
        assert "Log in" in login.text
        output = log_path.read_text()
        assert "username=engineer" in output and "password=engineer-demo-pass" in output

        # A demo user logs in through the page (session + CSRF) and lands on the runs page.
        browser = requests.Session()
        browser.get(f"{base}/login/")
        page = browser.post(
            f"{base}/login/",
            data={
                "username": "engineer",
                "password": "engineer-demo-pass",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/login/"},
        )
        assert page.status_code == 200 and page.url == f"{base}/runs/"
        assert browser.get(f"{base}/static/frontend/vendor/chart.umd.min.js").status_code == 200

        # The worker the command started executes a run on the embedded (filesystem) broker.
        token = requests.post(
            f"{base}/api/v1/auth/token/", json={"username": "engineer", "password": "engineer-demo-pass"}, timeout=30
        ).json()["token"]
        api = requests.Session()
        api.headers["Authorization"] = f"Token {token}"
        run = api.post(
            f"{base}/api/v1/runs/", json={"kind": "diagnostic", "config": {"steps": 2, "step_seconds": 0}}
        ).json()
        done = wait_until(
            lambda: (r := api.get(f"{base}/api/v1/runs/{run['id']}/").json())["state"] in ("succeeded", "failed") and r,
            timeout=120,
            what="the diagnostic run to finish",
        )
        assert done["state"] == "succeeded", done["error"]
        # The bundled sandbox models (a Stable Diffusion UNet and an SD3 flow transformer) and their prompt sets are
        # registered, so the platform works out of the box.
        models = api.get(f"{base}/api/v1/base-models/").json()["results"]
        assert [(m["name"], m["family"]) for m in models] == [("sandbox", "diffusion"), ("sandbox-flow", "flow")]
        assert {s["name"] for s in api.get(f"{base}/api/v1/prompt-sets/").json()["results"]} == {
            "sandbox-train",
            "sandbox-eval",
        }
        assert (tmp_path / "var" / "db.sqlite3").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.1)
        print(log_path.read_text()[-5000:])
