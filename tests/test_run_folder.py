"""The run folder, named once: its marker, is_run, its records, and a person's folder left untouched."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cnnkit import run_folder as rf
from cnnkit.cli import main
from cnnkit.config import Preprocess, load_run_config, make_config
from cnnkit.errors import ConfigError
from cnnkit.run_folder import RunFolder, check_usable, claim, is_run

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnkit"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def persons_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}\n')
    (folder / "history.csv").write_text("day,steps\n1,9000\n")
    (folder / "report.html").write_text("<p>my report</p>\n")
    (folder / "best.safetensors").write_bytes(b"\x00my weights\xff")
    return folder


def test_is_run_by_the_marker_or_an_older_runs_commit_record_not_by_common_names(tmp_path):
    assert not is_run(persons_folder(tmp_path))
    claim(tmp_path / "new", "lr-find")
    assert is_run(tmp_path / "new")
    marker = json.loads((tmp_path / "new" / rf.MARKER).read_text())
    assert marker["format"] == 1 and marker["kind"] == "lr-find" and marker["created"]
    older = tmp_path / "older"
    older.mkdir()
    (older / rf.COMMIT).write_text("{}")
    assert is_run(older)
    with pytest.raises(ValueError):
        claim(tmp_path / "x", "picture")


def test_train_out_into_a_persons_folder_is_refused_in_one_line_and_leaves_it_byte_identical(tmp_path, capsys):
    folder = persons_folder(tmp_path)
    before = snapshot(folder)
    rc = main(["train", "digits", "--model", "mlp", "--epochs", "1", "--out", str(folder), "--quiet",
               "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("cnnkit: error: --out ") and "not a cnnkit run folder" in err and str(folder) in err
    assert snapshot(folder) == before  # not one file changed, added (not even .lock) or removed


def test_lr_find_out_into_a_persons_folder_is_refused_before_the_test(tmp_path):
    from cnnkit.commands.train import lr_find

    folder = persons_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(ConfigError, match="not a cnnkit run folder"):
        lr_find(make_config(data="digits", model="mlp"), out=folder, progress=False)
    assert snapshot(folder) == before


def test_usable_folders_new_empty_or_a_run(tmp_path):
    from cnnkit.train.folder import claim_fresh_dir

    check_usable(tmp_path / "new")  # does not exist yet
    (tmp_path / "empty").mkdir()
    lock = claim_fresh_dir(tmp_path / "empty", explicit=True)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [rf.LOCK, rf.MARKER]
    lock.release()
    lock = claim_fresh_dir(tmp_path / "empty", explicit=True)  # claimed before, no epoch committed: reused
    lock.release()
    (tmp_path / "empty" / rf.COMMIT).write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run; use --resume"):
        claim_fresh_dir(tmp_path / "empty", explicit=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_usable(tmp_path / "file")


def test_a_default_run_name_taken_by_a_persons_folder_goes_to_the_next_number(tmp_path):
    from cnnkit.train.folder import claim_fresh_dir

    persons = persons_folder(tmp_path)
    before = snapshot(persons)
    lock = claim_fresh_dir(persons, explicit=False)
    assert lock.folder == tmp_path / "existing-2" and is_run(lock.folder)
    lock.release()
    assert snapshot(persons) == before


def test_records_are_written_and_read_back(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.is_run() and folder.marker() is None
    folder.claim()
    cfg = make_config(data="digits", epochs=2)
    folder.write_config(cfg)
    pre = Preprocess(classes=("a", "b"), image_size=(8, 8), channels=1, mean=(0.5,), std=(0.25,), model="mlp")
    folder.write_preprocess(pre)
    folder.write_classes(pre.classes)
    folder.write_metrics({"accuracy": 0.5})
    assert folder.config() == cfg and folder.config().given == ("data.source", "train.epochs")
    assert folder.preprocess() == pre and folder.classes() == ("a", "b")
    assert folder.metrics() == {"accuracy": 0.5} and folder.history() == [] and folder.auto() is None
    assert folder.features() is None
    (folder / rf.AUTO).write_text("{not json")
    assert folder.auto() is None  # an unreadable choice record is no choice
    folder.write_auto({"line": "x"})
    assert folder.auto() == {"line": "x"} and folder.marker()["kind"] == "train"
    with pytest.raises(ConfigError, match="no config.json"):
        RunFolder(tmp_path / "nothing").config()


def test_no_run_file_name_is_written_out_anywhere_but_the_run_folder_module():
    names = {getattr(rf, n) for n in rf.__all__ if isinstance(getattr(rf, n), str) and "." in getattr(rf, n)}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "run_folder.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not found, "use the names in cnnkit.run_folder:\n" + "\n".join(found)


def test_train_into_a_folder_claimed_by_the_caller_keeps_its_lock(tmp_path):
    from cnnkit.commands.train import train
    from cnnkit.train.folder import claim_fresh_dir
    from cnnkit.train.lock import FolderBusy, lock_run_folder

    lock = claim_fresh_dir(tmp_path / "run", explicit=True)
    cfg = make_config(data="digits", model="mlp", epochs=1, batch_size=128, progress=False, report=False,
                      label_issues="off", tensorboard=False, device="cpu", out=str(tmp_path / "elsewhere"),
                      cache_dir=str(tmp_path / "cache"))
    try:
        result = train(cfg, folder=lock)
        assert result.run_dir == tmp_path / "run" and not (tmp_path / "elsewhere").exists()
        with pytest.raises(FolderBusy):  # still the caller's
            lock_run_folder(tmp_path / "run")
        folder = RunFolder(result.run_dir)
        assert folder.is_run() and folder.marker()["kind"] == "train"
        assert (folder / rf.BEST).is_file() and (folder / rf.COMMIT).is_file() and folder.metrics()
        assert load_run_config(folder / rf.CONFIG, named=False).model.name == "mlp"
    finally:
        lock.release()
    lock_run_folder(tmp_path / "run").release()  # released by the caller: free again
