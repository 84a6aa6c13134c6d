"""The HTTP API against a live local server (in-process worker, SQLite state)."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
from PIL import Image

from tests.serve.conftest import Live, wait_status

OK_STATUSES = {"Ready", "Error", "Moderated", "Cancelled"}


def test_openai_client_generates_a_png_of_the_requested_size(live: Live) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    result = client.images.generate(prompt="a red circle", n=2, size="64x48",
                                    response_format="b64_json", extra_body={"steps": 2, "seed": 7})
    assert len(result.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.format == "PNG" and image.size == (64, 48)


def test_images_carry_parameters_and_provenance(live: Live) -> None:
    with live.client() as c:
        body = c.post("/v1/images/generations", json={"prompt": "a blue square", "size": "64x64",
                                                      "steps": 2, "seed": 11}).json()
        png = c.get(body["data"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    params = json.loads(Image.open(io.BytesIO(png.content)).text["fluxai"])
    assert params["prompt"] == "a blue square" and params["seed"] == 11
    assert params["model_ref"] == "flux-test-dev" and params["num_inference_steps"] == 2
    assert params["provenance"]["generated_by"] == "fluxai"


def test_models_lists_the_served_model(live: Live) -> None:
    with live.client() as c:
        body = c.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["flux-test-dev"]


def test_unknown_model_is_404_model_not_found(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/images/generations", json={"prompt": "x", "model": "dall-e-3"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_size_not_multiple_of_16_is_400_naming_the_allowed_sizes(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/images/generations", json={"prompt": "x", "size": "100x64"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "size" and error["type"] == "invalid_request_error"
    assert "multiple of 16 from 16 to 512" in error["message"]


def test_n_and_steps_out_of_range_are_400_with_the_range(live: Live) -> None:
    with live.client() as c:
        n = c.post("/v1/jobs", json={"prompt": "x", "n": 9}).json()["error"]
        steps = c.post("/v1/jobs", json={"prompt": "x", "steps": 0}).json()["error"]
    assert n["param"] == "n" and "from 1 to 4" in n["message"]
    assert steps["param"] == "steps" and "from 1 to 400" in steps["message"]


def test_unknown_field_is_422_listing_the_allowed_fields(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/jobs", json={"prompt": "x", "quality": "hd"})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "quality"
    assert "allowed fields: prompt, model, n, size" in r.json()["error"]["message"]


def test_wrong_type_is_422(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/jobs", json={"prompt": "x", "n": "2"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "n"


def test_body_that_is_not_json_is_400(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_oversized_body_is_413(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/jobs", json={"prompt": "x" * 100_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_loras_are_refused_while_the_server_has_none(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/jobs", json={"prompt": "x", "loras": [{"name": "style", "scale": 1.0}]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "lora_not_supported"


def test_unknown_job_is_404_in_openai_error_shape(live: Live) -> None:
    with live.client() as c:
        r = c.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_job_goes_from_pending_to_ready_with_image_urls(live: Live) -> None:
    with live.client() as c:
        job = c.post("/v1/jobs", json={"prompt": "a tree", "size": "64x64", "steps": 3}).json()
        assert job["status"] in {"Pending", "Running", "Ready"}
        assert job["polling_url"].endswith(f"/v1/jobs/{job['id']}")
        done = wait_status(c, job["id"], OK_STATUSES)
        assert done["status"] == "Ready" and done["progress"] == 1.0
        url = done["result"]["images"][0]["url"]
        assert c.get(url).status_code == 200


def test_event_stream_sends_progress_with_previews_then_done(live: Live) -> None:
    with live.client() as c:
        job = c.post("/v1/jobs", json={"prompt": "a house", "size": "64x64", "steps": 40}).json()
        events = []
        with c.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
    assert events[-1][0] == "done" and events[-1][1]["status"] == "Ready"
    steps = [e["step"] for k, e in events if k == "progress"]
    assert steps == sorted(steps) and len(set(steps)) > 1
    assert any(e.get("preview", "").startswith("data:image/png;base64,") for _, e in events)


def test_cancel_stops_a_running_job_before_its_last_step(live: Live) -> None:
    with live.client() as c:
        job = c.post("/v1/jobs", json={"prompt": "slow", "size": "256x256", "steps": 400}).json()
        wait_status(c, job["id"], {"Running"} | OK_STATUSES)
        while c.get(f"/v1/jobs/{job['id']}").json()["step"] < 1:
            pass
        c.delete(f"/v1/jobs/{job['id']}")
        done = wait_status(c, job["id"], OK_STATUSES)
    assert done["status"] == "Cancelled" and done["step"] < 400


def test_cancel_of_a_pending_job_is_immediate(live: Live) -> None:
    with live.client() as c:
        blocker = c.post("/v1/jobs", json={"prompt": "b", "size": "256x256", "steps": 300}).json()
        job = c.post("/v1/jobs", json={"prompt": "p", "size": "128x128", "steps": 2}).json()
        cancelled = c.delete(f"/v1/jobs/{job['id']}").json()
        c.delete(f"/v1/jobs/{blocker['id']}")
    assert cancelled["status"] == "Cancelled"


def test_jobs_waiting_together_share_one_forward_pass(live: Live) -> None:
    with live.client() as c:
        blocker = c.post("/v1/jobs", json={"prompt": "b", "size": "256x256", "steps": 60}).json()
        wait_status(c, blocker["id"], {"Running"} | OK_STATUSES)
        ids = [c.post("/v1/jobs", json={"prompt": f"p{i}", "size": "64x64", "steps": 2}).json()
               ["id"] for i in range(3)]
        done = [wait_status(c, i, OK_STATUSES) for i in ids]
    assert [d["status"] for d in done] == ["Ready"] * 3
    assert [d["batch_size"] for d in done] == [3, 3, 3]


def test_bfl_route_and_get_result_give_a_sample_url(live: Live) -> None:
    with live.client() as c:
        sub = c.post("/v1/flux-test-dev", json={"prompt": "a cat", "width": 64, "height": 64,
                                                "steps": 2, "seed": 1}).json()
        assert set(sub) == {"id", "polling_url"}
        result = c.get(sub["polling_url"]).json()
        while result["status"] not in OK_STATUSES:
            result = c.get(sub["polling_url"]).json()
        assert result["status"] == "Ready"
        assert c.get(result["result"]["sample"]).headers["content-type"] == "image/png"


def test_bfl_route_of_a_model_not_served_is_404(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/flux-dev", json={"prompt": "a cat"})
    assert r.status_code == 404 and "flux-test-dev" in r.json()["error"]["message"]


def test_retried_post_with_the_same_idempotency_key_returns_the_same_job(live: Live) -> None:
    with live.client(**{"Idempotency-Key": "retry-1"}) as c:
        first = c.post("/v1/jobs", json={"prompt": "once", "size": "64x64", "steps": 2}).json()
        second = c.post("/v1/jobs", json={"prompt": "once", "size": "64x64", "steps": 2}).json()
    assert first["id"] == second["id"]


def test_same_request_with_fixed_seed_is_served_from_cache(live: Live) -> None:
    body = {"prompt": "cache me", "size": "64x64", "steps": 2, "seed": 5}
    with live.client() as c:
        first = wait_status(c, c.post("/v1/jobs", json=body).json()["id"], OK_STATUSES)
        hits_before = _metric(c, "fluxai_cache_hits_total")
        second = c.post("/v1/jobs", json=body).json()
        hits_after = _metric(c, "fluxai_cache_hits_total")
    assert second["status"] == "Ready" and second["cached"] is True
    assert second["result"]["images"][0]["url"] == first["result"]["images"][0]["url"]
    assert hits_after == hits_before + 1


def test_random_seed_requests_never_hit_the_cache(live: Live) -> None:
    body = {"prompt": "fresh", "size": "64x64", "steps": 2}
    with live.client() as c:
        wait_status(c, c.post("/v1/jobs", json=body).json()["id"], OK_STATUSES)
        second = c.post("/v1/jobs", json=body).json()
    assert second["cached"] is False


def _metric(c: httpx.Client, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_expose_queue_depth_latency_images_and_errors(live: Live) -> None:
    with live.client() as c:
        c.post("/v1/images/generations", json={"prompt": "m", "size": "64x64", "steps": 1})
        c.get("/v1/jobs/missing")
        text = c.get("/metrics").text
        images = _metric(c, "fluxai_images_generated_total")
    assert "fluxai_queue_depth " in text
    assert "fluxai_job_latency_seconds_bucket{le=" in text
    assert images >= 1
    assert 'fluxai_http_errors_total{code="404"}' in text
    assert "fluxai_images_per_second " in text


def test_health_and_readiness(live: Live) -> None:
    with live.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_openapi_docs_are_served(live: Live) -> None:
    with live.client() as c:
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
    assert {"/v1/images/generations", "/v1/jobs", "/v1/get_result"} <= set(paths)


def test_web_page_is_served_at_root(live: Live) -> None:
    with live.client() as c:
        page = c.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="prompt"' in page.text and 'id="cancel"' in page.text


def test_concurrent_sync_requests_all_succeed(live: Live) -> None:
    results: list[int] = []

    def one(i: int) -> None:
        with live.client() as c:
            results.append(c.post("/v1/images/generations", json={
                "prompt": f"c{i}", "size": "64x64", "steps": 2}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
