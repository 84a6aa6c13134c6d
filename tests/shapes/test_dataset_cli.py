import json

import pytest

from fluxai.cli.main import main
from fluxai.shapes.world import WORLD


def test_dataset_command_writes_images_and_ground_truth(tmp_path):
    assert main(["dataset", "shapes", "--out", str(tmp_path), "--count", "5", "--size", "64"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    assert all((tmp_path / row["file"]).is_file() for row in rows)
    assert all(row["scene"]["width"] == 64 for row in rows)


def test_dataset_command_draws_the_canonical_layout(tmp_path):
    assert main(["dataset", "shapes", "--out", str(tmp_path), "--count", "30",
                 "--layout", "canonical"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    lone = [r for r in rows if r["kind"] in ("single_object", "colors")
            and r["spec"]["objects"][0]["position"] is None]
    assert lone
    jitter = WORLD.position_jitter * 128 + 1e-9
    for row in lone:
        (o,) = row["scene"]["objects"]
        assert abs(o["cx"] - 64) <= jitter and abs(o["cy"] - 64) <= jitter


def test_dataset_command_refuses_an_unknown_layout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["dataset", "shapes", "--out", str(tmp_path), "--count", "1", "--layout", "grid"])
    assert exit_.value.code == 2
    assert "invalid choice: 'grid'" in capsys.readouterr().err
    assert not (tmp_path / "captions.jsonl").exists()
