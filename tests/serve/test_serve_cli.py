"""`fluxai serve` / `fluxai worker` from the command line: bad flags are one-line errors, and the
server a user starts answers requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fluxai.cli.main import main
from tests.serve.conftest import TEST_MODEL, free_port, wait_ready


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--broker", "amqp://x"], "--broker 'amqp://x' is not supported"),
    (["serve", "--max-side", "100"], "--max-side must be a multiple of 16"),
    (["serve", "--max-n", "0"], "--max-n must be at least 1"),
    (["serve", "--moderation-hook", "nohook"], "must look like package.module:function"),
    (["serve", "--moderation-hook", "fluxai:nothing_here"], "cannot load moderation hook"),
    (["serve", "--blocked-terms", "/nonexistent/terms.txt"], "blocked-terms file not found"),
    (["worker"], "fluxai worker needs --broker"),
])
def test_bad_flags_are_one_line_errors(argv: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_model_is_an_error_before_listening(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "no-such-model", "--data-dir", str(tmp_path)]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_blocked_terms_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    from fluxai.serve.policy import read_terms

    (tmp_path / "terms.txt").write_text("# people to protect\n\nsome name\n  other \n")
    assert read_terms(tmp_path / "terms.txt") == ["some name", "other"]


def test_fluxai_serve_process_answers_a_generation(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fluxai.cli.main", "serve", "--model",
                             TEST_MODEL, "--port", str(port), "--data-dir", str(tmp_path),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout_s=180)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/images/generations", timeout=120,
                       json={"prompt": "a dot", "size": "32x32", "steps": 1})
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert r.status_code == 200 and r.json()["data"][0]["url"].startswith("http://")
    assert f"{TEST_MODEL} on http://127.0.0.1:{port}" in out.decode()
    assert len(list((tmp_path / "files").glob("*.png"))) == 1
