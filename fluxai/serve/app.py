"""The HTTP API: OpenAI Images routes, async jobs with server-sent events, BFL-style routes,
files, health and metrics, and the web page. Routes only translate; `Service` decides."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fluxai.serve.config import ServeConfig, lora_files
from fluxai.serve.errors import ApiError, not_found
from fluxai.serve.jobs import (
    CANCELLED,
    ERROR,
    MODERATED,
    PENDING,
    READY,
    TERMINAL,
    Job,
    JobStore,
    new_id,
    open_store,
)
from fluxai.serve.limits import BodyLimit, KeyCheck, RateLimiter
from fluxai.serve.metrics import render
from fluxai.serve.policy import PromptFilter
from fluxai.serve.schemas import (
    BflRequest,
    GenSpec,
    ImageRequest,
    spec_from_bfl,
    spec_from_openai,
)

STATIC = Path(__file__).parent / "static"
BFL_MODELS = ("flux-dev", "flux-schnell", "flux-tiny")
POLL_S = 0.025


class Service:
    """Accepting, finding and cancelling jobs; shared by every route."""

    def __init__(self, cfg: ServeConfig, store: JobStore, dispatcher: Any):
        self.cfg = cfg
        self.store = store
        self.dispatcher = dispatcher
        self.keys = KeyCheck(cfg.api_keys)
        self.limiter = RateLimiter(cfg.rate_limit, cfg.rate_burst)
        self.prompt_filter = PromptFilter(cfg.blocked_terms)
        self.lora_names = frozenset(lora_files(cfg.lora_dir))

    def identify(self, request: Request) -> str:
        client = request.client.host if request.client else "unknown"
        return self.keys.identify(request.headers, client)

    def check_model(self, model: str | None) -> None:
        if model is not None and model not in self.dispatcher.models():
            raise not_found(f"The model '{model}' does not exist on this server; available: "
                            f"{', '.join(self.dispatcher.models())}.", "model",
                            "model_not_found")

    def submit(self, spec: GenSpec, identity: str, idempotency_key: str | None) -> Job:
        self.prompt_filter.check(spec.prompt, spec.negative_prompt)
        scoped = f"{identity}:{idempotency_key}" if idempotency_key else None
        job = Job(id=new_id(), spec=spec.to_dict(), model=self.cfg.model)
        key = spec.cache_key(self.cfg.model)
        hit = self.store.get(self.store.cache_get(key) or "") if key else None
        if hit is not None and hit.status == READY and all(
                self.store.get_file(f) is not None for f in hit.files):
            now = time.time()
            job.status, job.cached, job.files = READY, True, hit.files
            job.parameters, job.started_at, job.finished_at = hit.parameters, now, now
            job.step = job.steps = hit.steps
            stored, created = self.store.create(job, scoped)
            if created:
                self.store.bump("cache_hits")
            return stored
        stored, created = self.store.create(job, scoped)
        if created:
            self.dispatcher.submit(stored.id)
        return stored

    def job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise not_found(f"No job with id '{job_id}'.", "id", "job_not_found")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.job(job_id)
        if job.status in TERMINAL:
            return job
        if not self.store.transition(job_id, {PENDING}, CANCELLED, finished_at=time.time()):
            # Running: the worker sees the flag at its next step and stops there.
            self.store.update(job_id, cancel_requested=True)
        else:
            self.store.record_finished(CANCELLED, time.time() - job.created_at, 0)
        return self.job(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        deadline = time.monotonic() + timeout_s
        pause = POLL_S
        while True:
            job = self.job(job_id)
            if job.status in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise ApiError(500, f"Job {job_id} did not finish within {timeout_s:g} s; "
                               f"poll /v1/jobs/{job_id} for its result.", type="server_error",
                               code="timeout")
            # Short jobs answer fast; long ones do not poll the store twenty times a second.
            await asyncio.sleep(pause)
            pause = min(4 * POLL_S, pause * 1.25)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def job_view(job: Job, base: str, preview: bool = True) -> dict[str, Any]:
    spec = job.spec
    view: dict[str, Any] = {
        "id": job.id, "object": "job", "status": job.status, "model": job.model,
        "created": int(job.created_at), "progress": round(job.progress, 4), "step": job.step,
        "steps": job.steps, "cached": job.cached, "batch_size": job.batch_size,
        "cancel_requested": job.cancel_requested, "worker": job.worker,
        "polling_url": f"{base}/v1/jobs/{job.id}", "events_url": f"{base}/v1/jobs/{job.id}/events",
        "request": {k: spec[k] for k in ("prompt", "n", "width", "height", "steps", "guidance",
                                         "seed", "negative_prompt", "loras")},
        "result": None, "error": None,
    }
    if preview and job.preview and job.status not in TERMINAL:
        view["preview"] = f"data:image/png;base64,{job.preview}"
    if job.status == READY:
        view["result"] = {"images": [
            {"url": f"{base}/v1/files/{f}", "seed": p.get("seed"), "parameters": p}
            for f, p in zip(job.files, job.parameters, strict=True)]}
    elif job.status == ERROR:
        view["error"] = {"message": job.error, "type": "server_error"}
    elif job.status == MODERATED:
        view["error"] = {"message": "The generated image was withheld by moderation.",
                         "type": "invalid_request_error", "code": "content_policy_violation"}
    return view


def _error_response(store: JobStore | None, err: ApiError) -> JSONResponse:
    if store is not None:
        # Metrics must never turn one error into a different one.
        with contextlib.suppress(Exception):
            store.bump(f"http_{err.status}")
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _validation_message(exc: RequestValidationError, model: type) -> ApiError:
    first = exc.errors()[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    field = ".".join(loc) or None
    kind = first.get("type", "")
    if kind in ("json_invalid", "model_attributes_type") or (kind == "missing" and not loc):
        return ApiError(400, "The request body is not a JSON object.", code="invalid_json")
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields)
        return ApiError(422, f"Unknown field '{field}'; allowed fields: {allowed}.",
                        param=field, code="unknown_parameter")
    if kind == "missing":
        return ApiError(422, f"Missing required field '{field}'.", param=field,
                        code="missing_required_parameter")
    return ApiError(422, f"Invalid value for '{field}': {first.get('msg')}.", param=field,
                    code="invalid_type")


def make_dispatcher(cfg: ServeConfig, store: JobStore, engine: Any = None) -> Any:
    if cfg.distributed:
        from fluxai.serve.celery_app import CeleryDispatch

        return CeleryDispatch(cfg, store)  # type: ignore[arg-type]
    from fluxai.serve.engine import Engine
    from fluxai.serve.queue import LocalQueue

    return LocalQueue(cfg, store, lambda: engine or Engine(cfg, store))


def create_app(cfg: ServeConfig, store: JobStore | None = None, engine: Any = None) -> FastAPI:
    """The app; `store` and a loaded `engine` may be given (the CLI loads the model before
    listening, so a bad model is an error at once, not a server that never gets ready)."""
    store = store or open_store(cfg.broker, cfg.data_dir, cfg.file_ttl_s)
    service = Service(cfg, store, make_dispatcher(cfg, store, engine))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.dispatcher.start()
        yield
        service.dispatcher.stop()

    app = FastAPI(title="fluxai", version="0.1.0", lifespan=lifespan,
                  description="FLUX.1 image generation: OpenAI Images API, async jobs, "
                  "BFL-style routes.")
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=cfg.limits.max_body_bytes)
    if cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins),
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(store, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        model = ImageRequest if request.url.path in ("/v1/images/generations", "/v1/jobs") \
            else BflRequest
        return _error_response(store, _validation_message(exc, model))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error_response(store, ApiError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(store, ApiError(500, f"Internal error: {exc}",
                                               type="server_error", code="internal_error"))

    # -- page, health, metrics ------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        ok, detail = service.dispatcher.ready()
        ok = ok and store.ping()
        return JSONResponse({"ready": ok, "detail": detail}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(render(store), media_type="text/plain; version=0.0.4")

    # -- OpenAI ---------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["openai"])
    async def models(request: Request) -> dict[str, Any]:
        service.identify(request)
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fluxai"}
            for m in service.dispatcher.models()]}

    @app.get("/v1/loras", tags=["flux"])
    async def loras(request: Request) -> dict[str, Any]:
        service.identify(request)
        return {"object": "list", "data": [{"name": n} for n in sorted(service.lora_names)]}

    def admit_openai(body: ImageRequest, request: Request, idempotency_key: str | None):
        """Who asks, within their rate, for a model we run: the one way an OpenAI-shaped
        request becomes a job, whether the caller then waits for it or polls."""
        identity = service.identify(request)
        service.limiter.take(identity)
        service.check_model(body.model)
        spec = spec_from_openai(body, cfg.limits, service.lora_names)
        return service.submit(spec, identity, idempotency_key)

    @app.post("/v1/images/generations", tags=["openai"])
    async def generations(body: ImageRequest, request: Request,
                          idempotency_key: str | None = Header(None)) -> dict[str, Any]:
        job = admit_openai(body, request, idempotency_key)
        job = await service.wait(job.id, cfg.sync_timeout_s)
        if job.status == MODERATED:
            raise ApiError(400, "The generated image was withheld by moderation.",
                           param="prompt", code="content_policy_violation")
        if job.status == CANCELLED:
            raise ApiError(500, f"Job {job.id} was cancelled.", type="server_error",
                           code="cancelled")
        if job.status != READY:
            raise ApiError(500, f"Generation failed: {job.error}", type="server_error",
                           code="generation_failed")
        data = []
        for file_id in job.files:
            if body.response_format == "b64_json":
                png = store.get_file(file_id) or b""
                data.append({"b64_json": base64.b64encode(png).decode(), "revised_prompt": None})
            else:
                data.append({"url": f"{_base(request)}/v1/files/{file_id}",
                             "revised_prompt": None})
        return {"created": int(job.created_at), "data": data}

    # -- async jobs -----------------------------------------------------------------------------
    @app.post("/v1/jobs", tags=["jobs"])
    async def create_job(body: ImageRequest, request: Request,
                         idempotency_key: str | None = Header(None)) -> dict[str, Any]:
        return job_view(admit_openai(body, request, idempotency_key), _base(request))

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def get_job(job_id: str, request: Request) -> dict[str, Any]:
        service.identify(request)
        return job_view(service.job(job_id), _base(request))

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"])
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        service.identify(request)
        return job_view(service.cancel(job_id), _base(request))

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        service.identify(request)
        service.job(job_id)
        base = _base(request)

        async def stream() -> AsyncIterator[str]:
            last: tuple[Any, ...] | None = None
            quiet_since = time.monotonic()
            while True:
                job = service.job(job_id)
                state = (job.status, job.step, job.preview, job.cancel_requested)
                if state != last:
                    last, quiet_since = state, time.monotonic()
                    kind = "done" if job.status in TERMINAL else "progress"
                    yield f"event: {kind}\ndata: {json.dumps(job_view(job, base))}\n\n"
                    if kind == "done":
                        return
                elif time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # -- BFL ------------------------------------------------------------------------------------
    async def bfl_submit(model: str, body: BflRequest, request: Request,
                         idempotency_key: str | None) -> dict[str, Any]:
        identity = service.identify(request)
        if model != cfg.model:
            raise not_found(f"This server runs '{cfg.model}', not '{model}'; use "
                            f"/v1/{cfg.model} or /v1/jobs.", "model", "model_not_found")
        service.limiter.take(identity)
        spec = spec_from_bfl(body, cfg.limits, service.lora_names)
        job = service.submit(spec, identity, idempotency_key)
        return {"id": job.id, "polling_url": f"{_base(request)}/v1/get_result?id={job.id}"}

    def bfl_route(model: str) -> None:
        async def route(body: BflRequest, request: Request,
                        idempotency_key: str | None = Header(None)) -> dict[str, Any]:
            return await bfl_submit(model, body, request, idempotency_key)

        app.post(f"/v1/{model}", tags=["bfl"], name=f"bfl_{model}")(route)

    for name in dict.fromkeys((*BFL_MODELS, cfg.model)):
        bfl_route(name)

    @app.get("/v1/get_result", tags=["bfl"])
    async def get_result(id: str, request: Request) -> dict[str, Any]:
        service.identify(request)
        job = service.job(id)
        out: dict[str, Any] = {"id": job.id, "status": job.status,
                               "progress": round(job.progress, 4), "result": None}
        if job.status == READY:
            p = job.parameters[0]
            out["result"] = {"sample": f"{_base(request)}/v1/files/{job.files[0]}",
                             "prompt": p.get("prompt"), "seed": p.get("seed"),
                             "width": p.get("width"), "height": p.get("height")}
        elif job.status == ERROR:
            out["details"] = {"error": job.error}
        return out

    # -- files ----------------------------------------------------------------------------------
    @app.get("/v1/files/{file_id}", tags=["files"])
    async def get_file(file_id: str) -> Response:
        # Unguessable ids act as capability URLs, so <img src> works without a key header.
        data = store.get_file(file_id) if file_id.isalnum() else None
        if data is None:
            raise not_found(f"No file with id '{file_id}'.", "file_id", "file_not_found")
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400, immutable"})

    return app
