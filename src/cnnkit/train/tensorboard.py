"""TensorBoard event files without the ``tensorboard`` package.

An event file is a sequence of TFRecords::

    uint64 length (little endian) | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C of data

and each record's data is an ``Event`` protobuf.  Only the few fields a scalar log needs are
written, encoded by hand:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

``tensorboard --logdir runs/`` then shows every run's loss, accuracy and learning rate per
epoch: :class:`TensorBoardLogger` is one of a training run's callbacks (``--tensorboard``, on by
default; ``cnnkit train`` and the studio alike).  :func:`read_scalars` parses a file back (the
tests check the framing with it).

The event files are logs, outside the run's commit (``commit.json`` vouches for the checkpoints,
training state and history only): they are appended as each epoch ends, and a resumed run
starts a new file beside the old ones, whose later epochs it may log again.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import Any, Iterator

from cnnkit.run_folder import TENSORBOARD
from cnnkit.train.callbacks import Callback, Signal

FILE_VERSION = b"brain.Event:2"
LOG_DIR = TENSORBOARD


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 fields: negatives as two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int, scalars: dict[str, float] | None = None,
                 file_version: bytes | None = None) -> bytes:
    """One Event protobuf: a header (``file_version``) or a summary of scalar values."""
    out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version)
    if scalars:
        values = b"".join(_bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value))
                          for tag, value in scalars.items())
        out += _bytes_field(5, values)
    return out


def frame(data: bytes) -> bytes:
    """A TFRecord around ``data``."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


class EventWriter:
    """Appends scalar summaries to one new event file in ``log_dir`` (created on the first write)."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.path = self.log_dir / f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"

    def _append(self, record: bytes) -> None:
        new = not self.path.exists()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            if new:
                fh.write(frame(encode_event(time.time(), 0, file_version=FILE_VERSION)))
            fh.write(frame(record))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        finite = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        if finite:
            self._append(encode_event(time.time(), step, finite))


# --------------------------------------------------------------------------- reading back


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: int for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def read_records(path: str | Path) -> Iterator[bytes]:
    """The records' data, each CRC checked (ValueError on a damaged file)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        length_bytes = data[pos:pos + 8]
        (n,) = struct.unpack("<Q", length_bytes)
        (crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if crc != masked_crc(length_bytes):
            raise ValueError(f"{path}: bad length checksum at byte {pos}")
        record = data[pos + 12:pos + 12 + n]
        (crc,) = struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])
        if crc != masked_crc(record):
            raise ValueError(f"{path}: bad data checksum at byte {pos}")
        yield record
        pos += 16 + n


def read_scalars(path: str | Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in an event file, in file order."""
    out = []
    for record in read_records(path):
        fields = list(_fields(record))
        step = next((v for k, v in fields if k == 2), 0)
        for summary in (v for k, v in fields if k == 5):
            for _, value in _fields(summary):
                parts = dict(_fields(value))
                out.append((step, parts[1].decode(), struct.unpack("<f", parts[2])[0]))
    return out


class TensorBoardLogger(Callback):
    """Per-epoch scalars (loss, acc, val_loss, val_acc, lr) into ``run_dir/tensorboard/``; step = epoch number."""

    def __init__(self, run_dir: str | Path):
        self.writer = EventWriter(Path(run_dir) / LOG_DIR)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        self.writer.scalars(epoch + 1, {k: v for k, v in logs.items() if k != "time"})
        return None
