"""LoRAs from --lora-dir: listed, applied per request by name and scale, recorded in the PNG."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.serve.conftest import Live, start_server, test_config


@pytest.fixture(scope="module")
def lora_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    loras = tmp_path_factory.mktemp("loras")
    g = torch.Generator().manual_seed(0)
    save_file({"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight":
               torch.randn(4, 64, generator=g) * 3,
               "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight":
               torch.randn(64, 4, generator=g) * 3}, loras / "bold-style.safetensors")
    server = start_server(test_config(tmp_path_factory.mktemp("lora-serve"), lora_dir=loras))
    yield server
    server.stop()


def _image(live: Live, **extra: object) -> tuple[np.ndarray, dict]:
    with live.client() as c:
        url = c.post("/v1/images/generations", json={
            "prompt": "a star", "size": "64x64", "steps": 2, "seed": 4, **extra,
        }).json()["data"][0]["url"]
        png = Image.open(io.BytesIO(c.get(url).content))
    return np.asarray(png.convert("RGB")), json.loads(png.text["fluxai"])


def test_loras_endpoint_lists_the_folder(lora_live: Live) -> None:
    with lora_live.client() as c:
        assert c.get("/v1/loras").json()["data"] == [{"name": "bold-style"}]


def test_named_lora_changes_the_image_and_is_recorded(lora_live: Live) -> None:
    from fluxai.pipeline import FluxPipeline

    styled, params = _image(lora_live, loras=[{"name": "bold-style", "scale": 1.0}])
    plain, plain_params = _image(lora_live)  # after a LoRA request: adapters must be off again
    pipe = FluxPipeline.from_pretrained("flux-test-dev")
    pipe.set_progress_bar_config(disable=True)
    reference = np.asarray(pipe("a star", width=64, height=64, num_inference_steps=2,
                                generator=[torch.Generator().manual_seed(4)]).images[0])
    assert np.abs(plain.astype(int) - reference.astype(int)).max() <= 1
    assert np.abs(plain.astype(int) - styled.astype(int)).max() > 8
    assert params["loras"] == [{"name": "bold-style", "scale": 1.0}]
    assert "loras" not in plain_params


def test_unknown_lora_name_lists_the_available_ones(lora_live: Live) -> None:
    with lora_live.client() as c:
        r = c.post("/v1/jobs", json={"prompt": "x", "loras": [{"name": "nope"}]})
    assert r.status_code == 400 and "available: bold-style" in r.json()["error"]["message"]
