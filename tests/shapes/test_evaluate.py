"""`fluxai eval shapes` and `evaluate_pipeline`: generate, judge, report per kind."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fluxai.cli.main import main
from fluxai.shapes.captions import eval_prompts
from fluxai.shapes.evaluate import (
    evaluate_pipeline,
    interleave_kinds,
    load_prompts,
    spec_from_dict,
    spec_to_dict,
)
from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.render import render
from fluxai.shapes.scenes import place
from fluxai.shapes.world import WORLD


class GroundTruthPipeline:
    """A perfect model: draws exactly what each prompt's spec asks for, seeded by its generator.
    Hard edges (supersample=1), so this tests the scoring, not the renderer's anti-aliasing."""

    def __init__(self, prompts, size=128):
        self.specs = dict(prompts)
        self.size = size
        self.calls = []

    def __call__(self, prompt, generator, output_type="pil", **kwargs):
        self.calls.append((list(prompt), [g.initial_seed() for g in generator], kwargs))
        images = []
        for text, g in zip(prompt, generator, strict=True):
            rng = np.random.default_rng(g.initial_seed())
            scene = place(self.specs[text], self.size, self.size, rng)
            images.append(Image.fromarray(render(scene, supersample=1)))
        return SimpleNamespace(images=images)


class WrongPipeline(GroundTruthPipeline):
    """Draws the spec of the next prompt in the list: every image answers another prompt."""

    def __init__(self, prompts, size=128):
        super().__init__(prompts, size)
        texts = [t for t, _ in prompts]
        self.specs = {t: dict(prompts)[texts[(i + 3) % len(texts)]] for i, t in enumerate(texts)}


@pytest.fixture(scope="module")
def prompts():
    return eval_prompts(seed=0, per_kind=4)


def test_a_perfect_model_scores_one_on_every_kind(prompts):
    result = evaluate_pipeline(GroundTruthPipeline(prompts), prompts, seeds=2, progress=False)
    assert result["overall"] == 1.0, [r for r in result["records"] if not r["correct"]][:3]
    assert set(result["per_kind"]) == set(WORLD.kinds)
    assert all(row["accuracy"] == 1.0 and row["total"] == 8
               for row in result["per_kind"].values())


def test_images_answering_other_prompts_score_low(prompts):
    result = evaluate_pipeline(WrongPipeline(prompts), prompts, seeds=1, progress=False)
    assert result["overall"] < 0.5


def test_each_image_gets_its_own_generator_seeded_by_its_seed(prompts):
    pipe = GroundTruthPipeline(prompts[:3])
    evaluate_pipeline(pipe, prompts[:3], seeds=[5, 6], batch_size=4, progress=False,
                      steps=3)
    texts = [t for call in pipe.calls for t in call[0]]
    seeds = [s for call in pipe.calls for s in call[1]]
    assert texts == [t for t, _ in prompts[:3] for _ in (5, 6)]
    assert seeds == [5, 6, 5, 6, 5, 6]
    assert [len(c[0]) for c in pipe.calls] == [4, 2]
    assert all(c[2]["num_inference_steps"] == 3 for c in pipe.calls)


def test_records_say_why_each_image_passed_or_failed(prompts):
    result = evaluate_pipeline(GroundTruthPipeline(prompts[:2]), prompts[:2], seeds=1,
                               progress=False)
    record = result["records"][0]
    assert record["prompt"] == prompts[0][0]
    assert spec_from_dict(record["spec"]) == prompts[0][1]
    assert record["reason"] and record["objects"]
    assert {"shape", "color", "cx", "cy", "r", "area", "iou"} <= set(record["objects"][0])


def test_plain_prompts_are_parsed():
    texts = ["a red star", "two circles"]
    specs = [(t, parse_prompt(t)) for t in texts]
    result = evaluate_pipeline(GroundTruthPipeline(specs), texts, seeds=1, progress=False)
    assert [r["kind"] for r in result["records"]] == ["colors", "counting"]
    assert result["overall"] == 1.0


def test_limit_keeps_every_kind_when_prompts_are_interleaved(prompts):
    first = interleave_kinds(prompts)[:len(WORLD.kinds)]
    assert [spec.kind for _, spec in first] == WORLD.kinds


def test_prompt_files_hold_plain_lines_or_jsonl_with_specs(tmp_path, prompts):
    text, spec = prompts[10]
    path = tmp_path / "prompts.txt"
    path.write_text("# a comment\n\na blue cross\n"
                    + json.dumps({"prompt": text, "spec": spec_to_dict(spec)}) + "\n"
                    + json.dumps({"prompt": "three stars"}) + "\n")
    loaded = load_prompts(path)
    assert [t for t, _ in loaded] == ["a blue cross", text, "three stars"]
    assert loaded[1][1] == spec
    assert loaded[2][1].count == 3


def test_a_bad_prompt_line_is_reported_with_its_line_number(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red star\na purple dragon\n")
    with pytest.raises(ValueError, match=r"prompts.txt line 2: .*unknown word 'dragon'"):
        load_prompts(path)


def test_cli_evaluates_a_model_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", "shapes", "--model", "flux-test-dev", "--limit", "3", "--seeds", "2",
                 "--steps", "1", "--out", str(out), "--quiet"])
    assert code == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[0].split() == ["kind", "correct", "total", "accuracy"]
    summary = json.loads(stdout[-1])
    assert summary["model"] == "flux-test-dev" and summary["total"] == 6
    assert list(summary["per_kind"]) == WORLD.kinds[:3]
    report = json.loads((out / "results.json").read_text())
    assert len(report["records"]) == 6
    assert all(r["reason"] and r["background"] in WORLD.backgrounds for r in report["records"])
    assert report["overall"] == summary["overall"]
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 0 and sheet.height > 128


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--prompts", "/nonexistent/prompts.txt"], "prompt file not found"),
    (["--model", "no-such-model"], "unknown model"),
])
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, capsys, argv, message):
    out = tmp_path / "report"
    code = main(["eval", "shapes", "--out", str(out), "--limit", "1", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
