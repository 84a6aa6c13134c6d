import torch

from fluxai.text.base import CachedTextEncoder
from fluxai.text.hashed import HashedEncoder


class CountingEncoder(HashedEncoder):
    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, prompts):
        self.calls.append(list(prompts))
        return super().encode(prompts)


def test_a_prompt_is_encoded_once_however_often_it_is_used():
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner)
    cached.encode(["a red star", "a blue circle"])
    cached.encode(["a red star", "a red star"])
    assert inner.calls == [["a red star", "a blue circle"]]


def test_cached_embeddings_equal_fresh_ones():
    cached = CachedTextEncoder(HashedEncoder())
    first = cached.encode(["a", "b"])
    again = cached.encode(["b", "a"])
    assert torch.equal(first[0][0], again[0][1])


def test_least_recently_used_prompt_is_evicted_first():
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, maxsize=2)
    cached.encode(["a"])
    cached.encode(["b"])
    cached.encode(["a"])
    cached.encode(["c"])  # evicts b
    cached.encode(["a"])
    cached.encode(["b"])
    assert inner.calls == [["a"], ["b"], ["c"], ["b"]]
