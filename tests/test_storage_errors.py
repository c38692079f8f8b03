"""A full disk, a read-only file system or a vanished file: one line, nothing lost (issue 17).

Every file the harness writes goes through ``backbones.atomic.atomic_write_bytes``. These
tests make its write fail with ``OSError(ENOSPC)`` at the first, a middle and the last write
of a tiny `harness search` run and check that (1) the CLI prints one line naming the file,
the reason and the size, without a traceback, and exits 1; (2) what was written before is
still loadable and no temporary file is left; (3) the same command, once the disk has room
again, resumes from the last good checkpoint and ends with the same genotype as an
uninterrupted run.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

import backbones.atomic as atomic
from backbones.atomic import StorageError, atomic_write_json, safe_torch_load, storage_errors
from harness_fixtures import (reference_search, run_cli_inprocess, search_dir, shared_cifar,
                              squash, write_params)


class _FullDisk:
    """Patch ``os.fdopen`` as the atomic writer sees it: the ``fail_at``-th file opened for
    writing (under ``root``, when given: other libraries write elsewhere too, e.g. DVC's own
    files when dvclive opens the repository) gets a ``write`` that writes half its data and
    raises ENOSPC. Records the names of the files written (from the temporary file's name,
    ``.<name>.<random>.tmp``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None,
                 code: int = errno.ENOSPC, root: Path | None = None) -> None:
        self.fail_at, self.code, self.names = fail_at, code, []
        real_fdopen = os.fdopen

        def fdopen(fd: int, *args: Any, **kwargs: Any):
            fh = real_fdopen(fd, *args, **kwargs)
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if root is not None and not str(path).startswith(str(root)):
                return fh
            self.names.append(path.name)
            if len(self.names) == self.fail_at:
                real_write = fh.write

                def write(data: bytes) -> int:
                    real_write(data[: len(data) // 2])
                    raise OSError(self.code, os.strerror(self.code))
                fh.write = write
            return fh
        monkeypatch.setattr(atomic.os, "fdopen", fdopen)


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def _target(tmp_name: str) -> str:
    """'.checkpoint.pt.abc123.tmp' -> 'checkpoint.pt'"""
    return tmp_name[1:].rsplit(".", 2)[0]


def test_failed_write_is_one_line_and_keeps_the_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"top1": 1.0})
    before = target.read_bytes()
    _FullDisk(monkeypatch, fail_at=1)
    with pytest.raises(StorageError) as info:
        atomic_write_json(target, {"top1": 2.0, "pad": "x" * 5000})
    msg = str(info.value)
    assert "\n" not in msg
    assert str(target) in msg and "No space left on device (ENOSPC)" in msg
    assert "4.9 KiB" in msg and "the previous file is unchanged" in msg
    assert target.read_bytes() == before and _temporaries(tmp_path) == []


@pytest.mark.parametrize("code, words", [(errno.EROFS, "Read-only file system"),
                                         (errno.EACCES, "Permission denied"),
                                         (errno.EDQUOT, "quota"),
                                         (errno.ENAMETOOLONG, "File name too long")])
def test_each_reason_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                              words: str) -> None:
    target = tmp_path / "new" / "genotype.json"
    _FullDisk(monkeypatch, fail_at=1, code=code)
    with pytest.raises(StorageError) as info:
        atomic.atomic_write_text(target, "{}")
    msg = str(info.value)
    assert str(target) in msg and words.lower() in msg.lower(), msg
    assert errno.errorcode[code] in msg and "2 bytes" in msg
    assert "no partial file was left" in msg and not target.exists()
    assert _temporaries(tmp_path) == []


def test_library_write_failure_is_one_line(tmp_path: Path) -> None:
    """What mmengine / torchreid write themselves: the OSError they raise, worded the same."""
    with pytest.raises(StorageError) as info:
        with storage_errors(tmp_path / "work"):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "work/x.pth"))
    assert str(info.value).startswith(f"cannot write {tmp_path / 'work/x.pth'} (size unknown)")


@pytest.fixture(scope="module")
def write_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The files a tiny uninterrupted search writes, in order."""
    data = shared_cifar(tmp_path_factory)   # generated (written) before counting
    mp = pytest.MonkeyPatch()
    try:
        folder = tmp_path_factory.mktemp("count-writes")
        disk = _FullDisk(mp, fail_at=None, root=folder)
        params = write_params(folder, data)
        code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
        assert code == 0, err
    finally:
        mp.undo()
    names = [_target(n) for n in disk.names]
    assert names[:2] == ["checkpoint.pt", "checkpoint.pt"], names   # two epochs
    return names


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_search_survives_a_full_disk(where: str, write_names: list[str], tmp_path: Path,
                                     tmp_path_factory: pytest.TempPathFactory,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ref = reference_search(tmp_path_factory)   # before the disk fills up
    fail_at = {"first": 1, "middle": 2, "last": len(write_names)}[where]
    failing = write_names[fail_at - 1]
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))
    out = search_dir(tmp_path, "direct_bnas", 0)
    args = (params, "search", "--method", "direct_bnas", "--seed", "0")

    before: dict[str, bytes] = {}
    disk = _FullDisk(monkeypatch, fail_at=fail_at, root=tmp_path)
    code, err = run_cli_inprocess(*args)
    monkeypatch.undo()
    assert len(disk.names) == fail_at   # it stopped at the failed write
    # (1) one line, no traceback, exit 1, naming the file, the reason and the size
    assert code == 1, err
    assert "Traceback" not in err
    error_lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(error_lines) == 1, err
    text = squash(err[err.index("error:"):])
    assert squash(f"cannot write {out / failing}") in text, err
    assert squash("No space left on device (ENOSPC)") in text
    assert any(unit in text for unit in ("bytes", "KiB", "MiB")), err
    # (2) nothing already written is damaged; no temporary file anywhere
    assert _temporaries(tmp_path) == []
    ckpt = out / "checkpoint.pt"
    if where == "first":
        assert not ckpt.exists()
    else:
        state = safe_torch_load(ckpt)
        expected_epoch = 0 if where == "middle" else 1
        assert state["epoch"] == expected_epoch
        for name in ("genotype.json", "metrics.json"):
            if (out / name).exists():
                before[name] = (out / name).read_bytes()
                json.loads(before[name])
    # (3) space again: the same command resumes from the last good checkpoint and finishes
    code, err = run_cli_inprocess(*args)
    assert code == 0, err
    if where != "first":
        assert squash(f"resuming search direct_bnas s0 from {ckpt}") in squash(err), err
    assert (out / "genotype.json").read_bytes() == ref["genotype"]
    assert json.loads((out / "metrics.json").read_text())["alphas"] == ref["metrics"]["alphas"]
    assert _temporaries(tmp_path) == []


def test_cifar_file_that_cannot_be_read_is_one_line(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.data.cifar as data
    from harness.data import generate_cifar_like
    folder = generate_cifar_like(tmp_path, n_train=20, n_test=10)
    path = folder / "test_batch"

    def vanished(p: Any, *a: Any, **k: Any):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(p))
    monkeypatch.setattr(data, "open", vanished, raising=False)
    with pytest.raises(StorageError) as info:
        data.load_pickle(path)
    assert str(info.value).startswith(f"cannot read {path}: No such file or directory (ENOENT)")


def test_cli_words_a_library_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """An OSError from code the harness does not own still ends in one line, exit 1."""
    import harness.stages.search as search
    params = write_params(tmp_path, shared_cifar(tmp_path_factory))

    def full(*a: Any, **k: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "runs" / "x.log"))
    monkeypatch.setattr(search, "run_search", full)
    code, err = run_cli_inprocess(params, "search", "--method", "direct_bnas", "--seed", "0")
    assert code == 1 and "Traceback" not in err
    assert squash(f"cannot write {tmp_path / 'runs' / 'x.log'} (size unknown): "
                  f"Read-only file system (EROFS)") in squash(err), err
