"""Content policy: a prompt filter before any work is queued, and an image-level moderation hook
after generation whose verdict turns a job into `Moderated`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fluxai.serve.errors import ApiError

ModerationHook = Callable[[Any, dict[str, Any]], bool]


class PromptFilter:
    """Refuses prompts containing any blocked term (whole words, case-insensitive)."""

    def __init__(self, terms: Iterable[str] = ()):
        self.terms = tuple(t.strip() for t in terms if t.strip())
        self._pattern = (re.compile(r"\b(" + "|".join(re.escape(t) for t in self.terms) + r")\b",
                                    re.IGNORECASE) if self.terms else None)

    def check(self, *texts: str | None) -> None:
        if self._pattern is None:
            return
        for text in texts:
            if text and self._pattern.search(text):
                raise ApiError(400, "Your request was rejected by the content policy of this "
                               "server.", param="prompt", code="content_policy_violation")


def read_terms(path: Path) -> list[str]:
    """One blocked term per line; blank lines and # comments are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"blocked-terms file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def moderate(hook: ModerationHook | None, images: list[Any],
             parameters: list[dict[str, Any]]) -> bool:
    """True when the hook flags any image of the job (the whole job is then withheld)."""
    if hook is None:
        return False
    return any(bool(hook(img, params)) for img, params in zip(images, parameters, strict=True))
