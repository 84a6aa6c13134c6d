"""Atomic writes: whole new file or the old one, with the permissions a plain open() gives."""

import os
import stat

import pytest
import torch
from PIL import Image

from fluxai.atomic import atomic_path, temporary_sibling, torch_save
from fluxai.metadata import save_png


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_written_file_gets_the_umask_permissions_not_mkstemps_private_ones(tmp_path, umask_022):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_generated_pngs_are_readable_by_others(tmp_path, umask_022):
    path = tmp_path / "image.png"
    save_png(Image.new("RGB", (4, 4)), path, {"prompt": "a red star"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644



def test_a_temporary_folder_gets_the_umask_permissions_too(tmp_path, umask_022):
    folder = temporary_sibling(tmp_path / "model", directory=True)
    assert folder.parent == tmp_path and folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_torch_save_replaces_a_checkpoint_whole(tmp_path):
    path = tmp_path / "state.pt"
    torch_save({"step": 1}, path)
    torch_save({"step": 2}, path)
    assert torch.load(path) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
