"""The hand-written TensorBoard event writer: TFRecord framing and Event/Summary protobufs parse back."""

from __future__ import annotations

import struct

import pytest

from cnnkit.train.tensorboard import EventWriter, crc32c, encode_event, frame, masked_crc, read_records, read_scalars


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C (Castagnoli) check value
    assert crc32c(b"") == 0


def test_scalars_round_trip_through_an_event_file(tmp_path):
    writer = EventWriter(tmp_path / "tb")
    writer.scalars(1, {"loss": 0.75, "val_acc": 0.5, "note": "ignored"})
    writer.scalars(2, {"loss": 0.25, "val_acc": 1.0})
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert files == [writer.path]
    records = list(read_records(writer.path))
    assert b"brain.Event:2" in records[0]  # the header TensorBoard looks for first
    assert read_scalars(writer.path) == [(1, "loss", 0.75), (1, "val_acc", 0.5), (2, "loss", 0.25), (2, "val_acc", 1.0)]


def test_a_damaged_record_is_detected(tmp_path):
    path = tmp_path / "events.out.tfevents.1"
    data = bytearray(frame(encode_event(1.0, 3, {"acc": 0.9})))
    data[14] ^= 0xFF  # a byte of the payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        list(read_records(path))


def test_framing_is_the_tfrecord_layout():
    payload = b"abc"
    rec = frame(payload)
    assert struct.unpack("<Q", rec[:8])[0] == 3
    assert struct.unpack("<I", rec[8:12])[0] == masked_crc(rec[:8])
    assert rec[12:15] == payload and struct.unpack("<I", rec[15:])[0] == masked_crc(payload)


def test_files_parse_with_tensorboard_itself_when_it_is_installed(tmp_path):
    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    writer = EventWriter(tmp_path)
    writer.scalars(4, {"loss": 0.5})
    events = list(loader.EventFileLoader(str(writer.path)).Load())
    values = [(e.step, v.tag, v.simple_value) for e in events for v in e.summary.value]
    assert values == [(4, "loss", 0.5)]


def test_cnnkit_train_writes_event_files_outside_the_commit_and_resume_still_checks(tmp_path, image_folder):
    import json

    from cnnkit.cli import main

    out = tmp_path / "run"
    common = ["--model", "mlp", "--batch-size", "16", "--no-report", "--quiet", "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", str(image_folder), "--epochs", "1", "--out", str(out), *common]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0  # the logs do not upset the commit
    logs = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(logs) == 2  # a resumed run starts a new file beside the first
    steps = [s for log in logs for s, tag, _ in read_scalars(log) if tag == "val_acc"]
    assert steps == [1, 2]
    history = json.loads((out / "history.json").read_text())
    assert read_scalars(logs[1])[-1][0] == history[-1]["epoch"] == 2
    assert not any(name.startswith("tensorboard") for name in json.loads((out / "commit.json").read_text())["files"])

    quiet = tmp_path / "off"
    assert main(["train", str(image_folder), "--epochs", "1", "--out", str(quiet), "--no-tensorboard", *common]) == 0
    assert (quiet / "best.safetensors").is_file() and not (quiet / "tensorboard").exists()
