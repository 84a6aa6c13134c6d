"""API keys, rate limits, the prompt filter, image moderation and CORS on a live server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serve.conftest import Live, start_server, test_config, wait_status

KEY = "sk-test-key"
RATE_KEY = "sk-rate-test"  # rate limits count per key: this test's own bucket


def flag_marked_prompts(image: Any, params: dict[str, Any]) -> bool:
    """A moderation hook: it sees each image and its parameters and withholds marked ones."""
    if "break-the-hook" in params["prompt"]:
        raise RuntimeError("moderation service unavailable")
    return image.size[0] > 0 and "moderate-me" in params["prompt"]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cfg = test_config(tmp_path_factory.mktemp("guarded"), api_keys=frozenset({KEY, RATE_KEY}),
                      rate_limit=60.0, rate_burst=3, blocked_terms=("forbidden thing",),
                      moderation=flag_marked_prompts, cors_origins=("https://app.example",))
    server = start_server(cfg)
    yield server
    server.stop()


def test_missing_api_key_is_401(guarded: Live) -> None:
    with guarded.client() as c:
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_wrong_api_key_is_401(guarded: Live) -> None:
    with guarded.client(Authorization="Bearer nope") as c:
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_rate_limit_answers_429_with_retry_after(guarded: Live) -> None:
    with guarded.client(Authorization=f"Bearer {RATE_KEY}") as c:
        codes = []
        for _ in range(6):
            r = c.post("/v1/jobs", json={"prompt": "x", "size": "64x64", "steps": 1})
            codes.append(r.status_code)
            if r.status_code == 429:
                break
    assert codes[-1] == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_blocked_prompt_is_refused_as_content_policy_violation(guarded: Live) -> None:
    with guarded.client(Authorization=f"Bearer {KEY}") as c:
        r = c.post("/v1/images/generations", json={"prompt": "a Forbidden Thing at noon"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "content_policy_violation"


def test_moderation_hook_verdict_makes_the_job_moderated(guarded: Live) -> None:
    with guarded.client(Authorization=f"Bearer {KEY}") as c:
        job = c.post("/v1/jobs", json={"prompt": "please moderate-me", "size": "64x64",
                                       "steps": 1}).json()
        done = wait_status(c, job["id"], {"Ready", "Moderated", "Error"})
    assert done["status"] == "Moderated" and done["result"] is None
    assert done["error"]["code"] == "content_policy_violation"


def test_cors_allows_the_configured_origin_only(guarded: Live) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    with guarded.client() as c:
        good = c.options("/v1/jobs", headers={"Origin": "https://app.example", **preflight})
        bad = c.options("/v1/jobs", headers={"Origin": "https://evil.example", **preflight})
    assert good.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in bad.headers


def test_files_need_no_key_so_img_tags_work(guarded: Live) -> None:
    with guarded.client(Authorization=f"Bearer {KEY}") as c:
        url = c.post("/v1/images/generations", json={"prompt": "ok", "size": "64x64",
                                                     "steps": 1}).json()["data"][0]["url"]
    with guarded.client() as anonymous:
        assert anonymous.get(url).status_code == 200


def test_failing_moderation_hook_fails_the_job_not_the_server(guarded: Live) -> None:
    with guarded.client(Authorization=f"Bearer {RATE_KEY}") as c:
        time.sleep(2)  # let the rate-limit test's bucket refill
        job = c.post("/v1/jobs", json={"prompt": "break-the-hook", "size": "64x64",
                                       "steps": 1}).json()
        failed = wait_status(c, job["id"], {"Ready", "Moderated", "Error"})
        after = c.post("/v1/jobs", json={"prompt": "fine", "size": "64x64", "steps": 1}).json()
        later = wait_status(c, after["id"], {"Ready", "Moderated", "Error"})
    assert failed["status"] == "Error"
    assert failed["error"]["message"] == "moderation service unavailable"
    assert later["status"] == "Ready"
