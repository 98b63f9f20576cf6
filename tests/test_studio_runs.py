"""The studio's job and run states as the page sees them: a stop before the first epoch, deleting a run
that holds no model, what auto chose (each record format), and the Host names the guard accepts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from cnnkit.studio.guard import host_names, split_host  # noqa: E402
from test_studio import FOLDER, make_folder, studio_client, wait_state  # noqa: E402


@pytest.fixture
def root(tmp_path) -> Path:
    make_folder(tmp_path / "root" / "shapes")
    return tmp_path / "root"


@pytest.fixture
def client(root, tmp_path):
    with studio_client(root, tmp_path / "cache") as c:
        yield c


def fake_run(runs: Path, name: str) -> Path:
    """A run folder with only its config (what a run stopped before its first epoch leaves)."""
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": {"name": "auto"}, "train": {"epochs": 3},
                                                 "data": {"source": "shapes"}}))
    return run


def test_a_stop_before_the_first_epoch_removes_the_new_run_and_says_so(client, root):
    job = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 50}).json()
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and json.loads(line[5:] or "{}").get("type") == "running":
                assert client.post(f"/api/jobs/{job['id']}/stop").status_code == 200
                break
    ended = wait_state(client, job["id"], ("stopped", "done", "error"))
    assert ended["state"] == "stopped" and "nothing to resume" in ended["message"], ended
    last = [e for e in _events(client, job["id"]) if e["type"] == "stopped"][0]
    assert last["resumable"] is False
    assert not (root / "runs" / job["run"]).exists()
    assert job["run"] not in [r["name"] for r in client.get("/api/runs").json()]


def _events(client, job_id: int) -> list[dict]:
    with client.stream("GET", f"/api/jobs/{job_id}/events") as s:
        return [json.loads(line[5:]) for line in s.iter_lines() if line.startswith("data:") and line != "data: {}"]


def test_only_a_run_that_never_finished_an_epoch_can_be_deleted(client, root):
    empty = fake_run(root / "runs", "empty-run")
    kept = fake_run(root / "runs", "kept-run")
    (kept / "best.safetensors").write_bytes(b"weights")
    listed = {r["name"]: r["state"] for r in client.get("/api/runs").json()}
    assert listed == {"empty-run": "incomplete", "kept-run": "done"}
    assert client.delete("/api/runs/empty-run", headers={"Origin": "http://evil.example"}).status_code == 403
    r = client.delete("/api/runs/kept-run")
    assert r.status_code == 409 and "never finished an epoch" in r.json()["detail"]
    assert client.delete("/api/runs/empty-run").json() == {"deleted": "empty-run"}
    assert not empty.exists() and kept.exists()
    assert client.delete("/api/runs/..").status_code in (400, 403, 404)


CANDIDATES = [
    {"name": "features", "kind": "features", "model": "efficientnet_lite0", "transfer": "features", "score": 0.91,
     "score_kind": "val_acc", "cv": 0.93, "seconds": 12.5, "epochs": 30, "stopped": "plateau", "chosen": True},
    {"name": "scratch", "kind": "scratch", "model": "fast-cnn-small", "transfer": "none", "score": 0.72,
     "score_kind": "val_acc", "cv": None, "seconds": 20.0, "epochs": 8, "stopped": "budget", "chosen": False},
]


def test_what_auto_chose_reads_every_record_format(client, root):
    runs = root / "runs"
    new = fake_run(runs, "new")
    (new / "auto.json").write_text(json.dumps({"line": "cnnkit: auto: efficientnet_lite0 features (0.91 val_acc)",
                                               "reason": "the best of 2 candidates within 60 s", "chosen": "features",
                                               "budget_s": 60, "elapsed_s": 41.2, "candidates": CANDIDATES,
                                               "notes": ["no fine-tuning: 2 epochs of it fit", 7, ""]}))
    board = fake_run(runs, "board")
    (board / "auto.json").write_text(json.dumps({"line": "auto: fast", "reason": "why", "chosen": "scratch"}))
    with open(board / "leaderboard.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CANDIDATES[0]))
        writer.writeheader()
        writer.writerows(CANDIDATES)
    old = fake_run(runs, "old")
    (old / "auto.json").write_text(json.dumps({"line": "cnnkit: auto: fast-cnn-small (small grey images)",
                                               "reasons": ["small grey images", "no flips"], "stages": [],
                                               "chosen": "first", "budget_s": 300}))
    fake_run(runs, "plain")
    broken = fake_run(runs, "broken")
    (broken / "auto.json").write_text("{not json")

    got = client.get("/api/runs/new").json()["auto"]
    assert got["line"] == "efficientnet_lite0 features (0.91 val_acc)" and got["reason"].startswith("the best")
    assert got["candidates"] == CANDIDATES and got["budget_s"] == 60 and got["elapsed_s"] == 41.2
    assert got["notes"] == ["no fine-tuning: 2 epochs of it fit", "7"]  # the race's decisions, as text
    from_csv = client.get("/api/runs/board").json()["auto"]["candidates"]
    assert [c["name"] for c in from_csv] == ["features", "scratch"] and from_csv[0]["chosen"] == "True"
    got = client.get("/api/runs/old").json()["auto"]
    assert got["line"] == "fast-cnn-small (small grey images)" and got["reason"] == "small grey images; no flips"
    assert got["candidates"] == [] and got["notes"] == []
    assert client.get("/api/runs/plain").json()["auto"] is None
    assert client.get("/api/runs/broken").json()["auto"] is None


def test_host_header_parsing():
    assert split_host("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert split_host("[::1]:8765") == ("[::1]", 8765)
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("LocalHost") == ("localhost", None)
    assert split_host("localhost:") == ("localhost", -1)
    assert split_host("localhost:80:80")[1] == -1
    assert split_host("[::1]x")[1] == -1
    assert split_host("::1")[1] == -1  # an IPv6 address must be bracketed
    assert {"127.0.0.1", "localhost", "[::1]"} <= host_names("127.0.0.1")
    assert "[fe80::1]" in host_names("fe80::1") and "studio.lan" in host_names("Studio.LAN")
