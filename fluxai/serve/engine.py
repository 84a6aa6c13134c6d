"""The one place jobs become images: a loaded pipeline runs a batch of compatible jobs in one
forward pass, reporting progress and previews, honouring cancels, and storing PNGs that carry
their parameters and provenance. The in-process queue and the Celery worker both call it."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from fluxai.serve.config import ServeConfig, lora_files
from fluxai.serve.jobs import CANCELLED, ERROR, MODERATED, READY, RUNNING, Job, JobStore, new_id
from fluxai.serve.policy import moderate
from fluxai.serve.schemas import GenSpec


class _AllCancelled(Exception):
    """Raised from the step callback to stop a batch nobody is waiting for any more."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def png_bytes(image: Any, params: dict[str, Any]) -> bytes:
    """The PNG `fluxai.metadata.save_png` writes (same chunks), as bytes for the store."""
    from fluxai.metadata import save_png

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.png"
        save_png(image, path, params)
        return path.read_bytes()


def provenance(job: Job) -> dict[str, Any]:
    from fluxai import __version__

    return {"generated_by": "fluxai", "version": __version__, "job_id": job.id,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


class Engine:
    def __init__(self, cfg: ServeConfig, store: JobStore):
        import torch

        from fluxai.pipeline import FluxPipeline

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.store = store
        self.name = worker_name()
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.pipe = FluxPipeline.from_pretrained(cfg.model, torch_dtype=dtype).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.guided = bool(self.pipe.transformer.config.guidance_embed)
        # Every offered LoRA is loaded once as a runtime adapter; a batch switches them on.
        for name, path in lora_files(cfg.lora_dir).items():
            self.pipe.load_lora_weights(str(path), adapter_name=name)
        self._use_loras(())

    def _use_loras(self, loras: tuple[tuple[str, float], ...]) -> None:
        if self.pipe.get_list_adapters()["transformer"]:
            self.pipe.set_adapters([n for n, _ in loras], [s for _, s in loras])

    def steps_for(self, spec: GenSpec) -> int:
        return spec.steps or self.pipe.defaults.num_inference_steps

    def _call_args(self, spec: GenSpec) -> dict[str, Any]:
        d = self.pipe.defaults
        args: dict[str, Any] = {
            "width": spec.width or d.width, "height": spec.height or d.height,
            "num_inference_steps": self.steps_for(spec),
            "negative_prompt": spec.negative_prompt,
        }
        if spec.guidance is not None:
            # As in `fluxai generate`: models without distilled guidance take it as true CFG.
            args["guidance_scale" if self.guided else "true_cfg_scale"] = spec.guidance
        return args

    def _preview(self, latents: Any, rows: list[int], width: int, height: int) -> list[str]:
        import torch

        from fluxai.pipeline import postprocess
        from fluxai.sampling import unpack

        lh, lw = height // self.pipe.downscale, width // self.pipe.downscale
        with torch.no_grad():
            decoded = self.pipe.vae.decode(unpack(latents[rows], lh, lw))
        out = []
        for img in postprocess(decoded, "pil"):
            img.thumbnail((self.cfg.preview_side, self.cfg.preview_side))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            out.append(base64.b64encode(buf.getvalue()).decode())
        return out

    def run(self, jobs: list[Job]) -> None:
        """Run jobs already marked Running; leaves each in a terminal state (or Running if this
        process dies, for a redelivery to pick up)."""
        import torch

        specs = [GenSpec.from_dict(j.spec) for j in jobs]
        args = self._call_args(specs[0])
        steps = args["num_inference_steps"]
        prompts: list[str] = []
        generators: list[torch.Generator] = []
        first_row: dict[str, int] = {}
        for job, spec in zip(jobs, specs, strict=True):
            first_row[job.id] = len(prompts)
            prompts += [spec.prompt] * spec.n
            generators += [torch.Generator("cpu").manual_seed(spec.seed + i)
                           for i in range(spec.n)]
        live = {j.id: j for j in jobs}
        n_previews = min(self.cfg.previews, steps)
        preview_steps = {round(steps * (k + 1) / (n_previews + 1)) for k in range(n_previews)}
        created = {j.id: j.created_at for j in jobs}
        started = time.time()
        for job in jobs:
            self.store.update(job.id, steps=steps, step=0, heartbeat=started,
                              batch_size=len(jobs))

        def on_step(pipe: Any, i: int, t: float, kw: dict[str, Any]) -> None:
            now = time.time()
            for job_id in list(live):
                current = self.store.get(job_id)
                if current is None or current.cancel_requested or current.status != RUNNING:
                    del live[job_id]
                    if self.store.transition(job_id, {RUNNING}, CANCELLED, finished_at=now,
                                             step=i + 1):
                        self.store.record_finished(CANCELLED, now - created[job_id], 0)
            if not live:
                raise _AllCancelled
            previews: dict[str, str] = {}
            if i + 1 in preview_steps:
                ids = list(live)
                thumbs = self._preview(kw["latents"], [first_row[j] for j in ids],
                                       args["width"], args["height"])
                previews = dict(zip(ids, thumbs, strict=True))
            for job_id in live:
                extra = {"preview": previews[job_id]} if job_id in previews else {}
                self.store.update(job_id, step=i + 1, heartbeat=now, **extra)

        try:
            self._use_loras(specs[0].loras)  # equal within a batch (part of its batch key)
            result = self.pipe(prompts, generator=generators, num_images_per_prompt=1,
                               callback_on_step_end=on_step, **args)
        except _AllCancelled:
            return
        except Exception as e:  # the jobs record what went wrong; the worker lives on
            self._fail(list(live), e, created)
            return
        for job, spec in zip(jobs, specs, strict=True):
            if job.id in live:
                rows = range(first_row[job.id], first_row[job.id] + spec.n)
                try:
                    self._finish(job, spec, [result.images[r] for r in rows],
                                 [result.parameters[r] for r in rows])
                except Exception as e:  # e.g. a moderation hook that raised
                    self._fail([job.id], e, created)

    def _fail(self, job_ids: list[str], error: Exception, created: dict[str, float]) -> None:
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        now = time.time()
        for job_id in job_ids:
            if self.store.transition(job_id, {RUNNING}, ERROR, error=message, finished_at=now):
                self.store.record_finished(ERROR, now - created[job_id], 0)

    def _finish(self, job: Job, spec: GenSpec, images: list[Any],
                parameters: list[dict[str, Any]]) -> None:
        params = [{**p, "seed": spec.seed + i, "model_ref": job.model, "provenance":
                   provenance(job)} for i, p in enumerate(parameters)]
        if spec.loras:
            params = [{**p, "loras": [{"name": n, "scale": s} for n, s in spec.loras]}
                      for p in params]
        now = time.time()
        if moderate(self.cfg.moderation, images, params):
            if self.store.transition(job.id, {RUNNING}, MODERATED, finished_at=now,
                                     preview=None):
                self.store.record_finished(MODERATED, now - job.created_at, 0)
            return
        file_ids = []
        for image, p in zip(images, params, strict=True):
            file_id = new_id()
            self.store.put_file(file_id, png_bytes(image, p))
            file_ids.append(file_id)
        # Cache entry first: whoever sees Ready must also find it (it is checked for Ready).
        key = spec.cache_key(job.model)
        if key is not None:
            self.store.cache_put(key, job.id)
        if self.store.transition(job.id, {RUNNING}, READY, files=file_ids, parameters=params,
                                 finished_at=now, step=self.steps_for(spec)):
            self.store.record_finished(READY, now - job.created_at, len(images))
