import pytest
import torch

from fluxai.checkpoints import CheckpointError
from fluxai.config import PRESETS
from fluxai.model.transformer import Flux
from fluxai.perf.gguf import load_gguf_transformer, save_gguf_transformer

pytest.importorskip("gguf")


@pytest.mark.parametrize(("qtype", "tolerance"), [("Q8_0", 2e-3), ("Q4_0", 3e-2)])
def test_a_quantized_file_loads_back_within_its_quantization_error(tmp_path, qtype, tolerance):
    torch.manual_seed(0)
    model = Flux(PRESETS["flux-test-dev"].transformer).eval()
    path = tmp_path / "model.gguf"
    save_gguf_transformer(model, path, qtype)
    loaded = load_gguf_transformer(path, torch.float32)
    assert loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    assert 0 < worst < tolerance


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable GGUF file") as err:
        load_gguf_transformer(path)
    assert "\n" not in str(err.value)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_gguf_transformer(tmp_path / "absent.gguf")
