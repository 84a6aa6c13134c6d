"""Shapes World: the synthetic world our default model is trained on and judged in.

The contract (`shapes-world.json`, vendored from the project's shared contract) fixes the
palette, shapes, sizes, positions and the six GenEval kinds; see docs/shapes-world.md.
"""

from fluxai.shapes.captions import caption, eval_prompts
from fluxai.shapes.dataset import iter_examples, write_dataset
from fluxai.shapes.judge import detect, judge
from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.render import render, shape_mask
from fluxai.shapes.scenes import place, sample_spec
from fluxai.shapes.world import WORLD, ObjectSpec, PlacedObject, PromptSpec, Scene

__all__ = [
    "WORLD",
    "ObjectSpec",
    "PlacedObject",
    "PromptSpec",
    "Scene",
    "caption",
    "detect",
    "eval_prompts",
    "iter_examples",
    "judge",
    "parse_prompt",
    "place",
    "render",
    "sample_spec",
    "shape_mask",
    "write_dataset",
]
