"""Exact, incremental reading of one scalar tag from TensorBoard event files.

A training script logs its metric with ``SummaryWriter.add_scalar`` (torch, tensorboardX) or
``tf.summary.scalar`` (TF2). nbtune needs every point of that one tag, polled every half second
while the script runs, so this module does not use TensorBoard's ``EventAccumulator``:

* ``EventAccumulator`` keeps at most 10,000 scalars per tag by reservoir sampling, so "the last
  50 points" of a long run can be a sample. :class:`ScalarTail` keeps every point.
* Without TensorFlow, TensorBoard checks each record's CRC in pure Python (~10 us a record).
  :class:`ScalarTail` frames the TFRecord stream itself, checks the CRCs with numpy, and decodes
  (with the protobuf ``Event`` message, no TensorFlow) only the records whose bytes contain the
  encoded tag.

An event file is a sequence of TFRecords::

    uint64  length            (little-endian)
    uint32  masked CRC-32C of the length bytes
    byte    data[length]      (a serialized ``tensorboard.Event``)
    uint32  masked CRC-32C of the data

Each event file keeps a byte offset: a poll reads only the bytes appended since the last one and
stops before an incomplete record at the end (the writer may be in the middle of it), which the
next poll reads again once it is complete.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

__all__ = ["ScalarTail", "reported_hyperparameters", "scalar_tags"]

_log = logging.getLogger(__name__)

_EVENT_FILE_PREFIX = "events.out.tfevents"
_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of it
_FRAME_BYTES = 16  # header + uint32 masked CRC of the data
# protobuf cannot parse a message of 2 GiB or more, so a longer length is garbage.
_MAX_RECORD_BYTES = 2**31 - 1
_READ_CHUNK_BYTES = 16 << 20
# Records longer than this get their data CRC checked byte by byte in Python instead of in the
# column-wise numpy loop (whose cost is one numpy round per byte of the longest record).
_VECTOR_CRC_MAX_BYTES = 4096
# Below this many bytes in all, CRCs are computed in pure Python (the few records a poll of a
# running script finds), as numpy's per-call overhead would dominate.
_PYTHON_CRC_MAX_BYTES = 2048
# Below this many records, per-record Python (protobuf decoding, CRCs of lengths) beats numpy.
_NUMPY_MIN_RECORDS = 64
# A directory listed less than this long after its mtime is listed again on the next poll even if
# its mtime has not changed: on file systems with coarse timestamps a file created in the same
# tick as the listing would otherwise stay unseen until the next change to the directory.
_DIR_MTIME_SLACK_NS = 2_000_000_000
# Bytes at the start of an event file remembered to notice a file rewritten in place (the first
# record holds the writer's start time).
_FINGERPRINT_BYTES = 64
_SCALAR_PLUGINS = ("scalars", "")
_TENSOR_DTYPES = {
    types_pb2.DT_FLOAT: ("float_val", "<f4"),
    types_pb2.DT_DOUBLE: ("double_val", "<f8"),
    types_pb2.DT_HALF: ("half_val", "<f2"),
}

# The columns kept per point: ``keys`` (merge order), ``fids`` and ``seqs`` (file, index in it).
_COLUMNS = ("steps", "values", "wall_times", "keys", "fids", "seqs")

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _crc32c_table() -> np.ndarray:
    """Build the byte-wise lookup table of CRC-32C (Castagnoli, reflected poly 0x82F63B78)."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc32c_table()
_CRC_TABLE_LIST: list[int] = _CRC_TABLE.tolist()


def _mask(crc: np.ndarray) -> np.ndarray:
    """TFRecord's CRC masking (rotate right by 15, add a constant), on uint32 arrays."""
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _masked_crc32c_bytes(data: bytes | memoryview) -> int:
    """Masked CRC-32C of one byte string, in pure Python (for a few short or long strings)."""
    table = _CRC_TABLE_LIST
    crc = 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc32c_many(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of many byte ranges of one buffer at once.

    The ranges are processed column by column (byte ``j`` of every range that is longer than
    ``j``), so the Python-level loop runs once per byte of the longest range, not once per byte
    of data; keep the ranges short (see ``_VECTOR_CRC_MAX_BYTES``).

    Args:
        data: The buffer, as a flat ``uint8`` array.
        starts: Offset of each range in ``data``.
        lengths: Length of each range.

    Returns:
        The masked CRC of each range (``uint32``), in the order of ``starts``.

    """
    count = len(starts)
    if count == 0:
        return np.empty(0, dtype=np.uint32)
    if int(lengths.sum()) <= _PYTHON_CRC_MAX_BYTES:  # cheaper than a numpy round per byte
        return np.array(
            [
                _masked_crc32c_bytes(data[start : start + size].tobytes())
                for start, size in zip(starts.tolist(), lengths.tolist(), strict=True)
            ],
            dtype=np.uint32,
        )
    # Longest first, so that the ranges still running at byte j are a prefix.
    order = np.argsort(-lengths, kind="stable")
    first = starts[order]
    sizes = lengths[order]
    active = np.searchsorted(-sizes, -np.arange(int(sizes[0]), dtype=np.int64), side="left")
    crc = np.full(count, 0xFFFFFFFF, dtype=np.uint32)
    table = _CRC_TABLE
    for j, k in enumerate(active.tolist()):
        head = crc[:k]
        crc[:k] = table[(head ^ data[first[:k] + j]) & np.uint32(0xFF)] ^ (head >> np.uint32(8))
    result = np.empty(count, dtype=np.uint32)
    result[order] = _mask(crc ^ np.uint32(0xFFFFFFFF))
    return result


def _gather(buf: bytes, offsets: np.ndarray, dtype: str) -> np.ndarray:
    """Read the little-endian number of ``dtype`` at each (unaligned) offset of ``buf``."""
    data = np.frombuffer(buf, dtype=np.uint8)
    width = np.dtype(dtype).itemsize
    rows = np.empty((len(offsets), width), dtype=np.uint8)
    for i in range(width):  # a column at a time: faster than one 2-D fancy index
        rows[:, i] = data[offsets + i]
    return rows.view(dtype).ravel()


def _length_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of each record length's 8 bytes, computed once per distinct length."""
    if not len(lengths):
        return np.empty(0, dtype=np.uint32)
    # Most records of a run have one of a few lengths.
    if int(lengths.max()) < 1 << 22:
        distinct = np.flatnonzero(np.bincount(lengths))
        lookup = np.zeros(int(distinct[-1]) + 1, dtype=np.uint32)
        inverse = lengths
    else:
        distinct, inverse = np.unique(lengths, return_inverse=True)
        lookup = np.zeros(len(distinct), dtype=np.uint32)
    encoded = distinct.astype("<u8").tobytes()
    crcs = _masked_crc32c_many(
        np.frombuffer(encoded, dtype=np.uint8),
        np.arange(len(distinct), dtype=np.int64) * 8,
        np.full(len(distinct), 8, dtype=np.int64),
    )
    if len(lookup) == len(distinct):
        lookup[:] = crcs
    else:
        lookup[distinct] = crcs
    return lookup[inverse]


def _contains(sorted_values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Tell, for each item, whether it is in ``sorted_values`` (a sorted array)."""
    if not len(sorted_values):
        return np.zeros(len(items), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_values, items), len(sorted_values) - 1)
    return sorted_values[where] == items


def _decode_simple(
    buf: bytes, starts: np.ndarray, lengths: np.ndarray, pattern_at: np.ndarray, pattern_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode, in numpy, the records that are exactly one ``simple_value`` of the tag.

    That is the record torch's and tensorboardX's ``add_scalar`` write, serialized (as every
    protobuf library does) in field order::

        09 <f64 wall_time> [10 <varint step>] 2a <len> 0a <len> <tag pattern> 15 <f32 value>

    Every byte of that layout is checked, so a record that passes decodes exactly as protobuf
    would decode it; the others (TF2 tensors, several values in one event, step < 0...) are left
    to protobuf.

    Args:
        buf: The bytes the records are in.
        starts: Offset of each record's data.
        lengths: Length of each record's data.
        pattern_at: The offsets at which the encoded tag occurs in ``buf`` (sorted).
        pattern_len: Length of the encoded tag.

    Returns:
        Which records have the layout, and their steps, values and wall times.

    """
    none = np.zeros(len(starts), dtype=bool)
    empty = np.empty(0)
    if pattern_len + 7 > 0x7F:  # the lengths of the nested messages would take two bytes
        return none, empty.astype(np.int64), empty, empty
    data = np.frombuffer(buf, dtype=np.uint8)
    # wall_time (9 bytes), the step (0 or 2 to 10 bytes), 4 length bytes, the tag, the value (5).
    shortest = 9 + 4 + pattern_len + 5
    fits = (lengths >= shortest) & (lengths <= shortest + 10)
    first, size = starts[fits], lengths[fits]
    tag_at = first + size - 5 - pattern_len
    step_bytes = size - shortest  # key and varint of the step field
    ok = (
        (data[first] == 0x09)
        & (data[tag_at - 4] == 0x2A)
        & (data[tag_at - 3] == pattern_len + 7)
        & (data[tag_at - 2] == 0x0A)
        & (data[tag_at - 1] == pattern_len + 5)
        & (data[tag_at + pattern_len] == 0x15)
        & _contains(pattern_at, tag_at)
        & (step_bytes != 1)
        & ((step_bytes == 0) | (data[first + 9] == 0x10))
    )
    steps = np.zeros(len(first), dtype=np.uint64)
    varint_len = np.maximum(step_bytes - 1, 0)
    longest = min(int(varint_len.max(initial=0)), 9)  # up to 9 bytes: 0 <= step < 2**63
    for j in range(longest):
        inside = j < varint_len
        byte = np.where(inside, data[first + 10 + j], 0)  # in bounds: a record is > 19 bytes
        last = j == varint_len - 1
        ok &= ~inside | ((byte >= 0x80) != last)
        steps |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    matched = none.copy()
    matched[np.flatnonzero(fits)[ok]] = True
    first, tag_at = first[ok], tag_at[ok]
    return (
        matched,
        steps[ok].astype(np.int64),
        _gather(buf, tag_at + pattern_len + 1, "<f4").astype(np.float64),
        _gather(buf, first + 1, "<f8"),
    )


@dataclass
class _Frames:
    """The complete, valid records found at the start of a buffer."""

    starts: np.ndarray  # int64 offset of each record's header
    lengths: np.ndarray  # int64 length of each record's data
    end: int  # offset just past the last record in ``starts``: where the next read resumes
    corrupt: bool  # reading stopped at a corrupt header (not at an incomplete record)


def _frame(buf: bytes, verify_crc: bool) -> _Frames:
    """Split ``buf`` into TFRecords, stopping at an incomplete or corrupt one.

    Args:
        buf: Bytes of an event file, starting at a record boundary.
        verify_crc: Check the masked CRC of every record's length.

    Returns:
        The complete records with a sane (and, if checked, CRC-valid) length, in order.

    """
    size = len(buf)
    bounds: list[int] = []
    append = bounds.append
    unpack = _U64.unpack_from
    pos = 0
    # The hot loop: record lengths chain record starts, so framing is inherently sequential.
    # ``unpack`` raises when fewer than 8 bytes are left (or pos is past the end, OverflowError
    # if a garbage length took it past 2**63), which ends it without a comparison per record.
    try:
        while True:
            append(pos)
            pos += unpack(buf, pos)[0] + _FRAME_BYTES
    except (struct.error, OverflowError):
        pass
    # Only the last bound can lie past the end; clip it so that it fits an int64.
    bounds[-1] = min(bounds[-1], size + 1)
    edges = np.array(bounds, dtype=np.int64)
    complete = int(np.searchsorted(edges[1:], size, side="right"))
    starts = edges[:complete]
    lengths = edges[1 : complete + 1] - starts - _FRAME_BYTES
    valid = lengths <= _MAX_RECORD_BYTES
    if verify_crc and complete >= _NUMPY_MIN_RECORDS:
        valid &= _length_crcs(lengths) == _gather(buf, starts + 8, "<u4")
    elif verify_crc:
        valid &= np.array(
            [
                _masked_crc32c_bytes(buf[start : start + 8]) == _U32.unpack_from(buf, start + 8)[0]
                for start in starts.tolist()
            ],
            dtype=bool,
        )
    corrupt = not valid.all()
    if corrupt:
        complete = int(np.argmin(valid))  # the first invalid record
        starts, lengths = starts[:complete], lengths[:complete]
    end = int(edges[complete])
    if not corrupt and end + _HEADER_BYTES <= size:
        # The next record's header is all there but its data is not (yet): a record still being
        # written, unless the header is garbage, in which case waiting will not help.
        length = _U64.unpack_from(buf, end)[0]
        corrupt = length > _MAX_RECORD_BYTES or (
            verify_crc
            and _masked_crc32c_bytes(buf[end : end + 8]) != _U32.unpack_from(buf, end + 8)[0]
        )
    return _Frames(starts, lengths, end, corrupt)


def _read_records(
    file: BinaryIO,
    offset: int,
    verify_crc: bool,
    on_chunk: Callable[[bytes, _Frames, int], None],
) -> tuple[int, bool]:
    """Frame the complete records of an open event file from ``offset``, a chunk at a time.

    Args:
        file: The event file, opened unbuffered in binary mode.
        offset: A record boundary to start at.
        verify_crc: Check the masked CRC of every record's length.
        on_chunk: Called with each chunk of bytes read, the records framed in it and the offset
            of the chunk in the file.

    Returns:
        The offset just past the last complete record (where the next read must resume), and
        whether reading stopped at a corrupt record.

    """
    chunk = _READ_CHUNK_BYTES
    while True:
        file.seek(offset)
        buf = file.read(chunk)
        if not buf:
            return offset, False
        frames = _frame(buf, verify_crc)
        if len(frames.starts):
            on_chunk(buf, frames, offset)
        offset += frames.end
        if frames.corrupt:
            return offset, True
        if len(buf) < chunk:  # at the end of the file
            return offset, False
        if frames.end == 0:  # a record longer than the chunk
            chunk *= 2


def _tensor_scalar(tensor: tensor_pb2.TensorProto) -> float | None:
    """Return the value of a one-element float tensor (TF2's form of a scalar), else None."""
    form = _TENSOR_DTYPES.get(tensor.dtype)
    if form is None:
        return None
    field, dtype = form
    if tensor.tensor_content:
        array = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        if math.prod(dim.size for dim in tensor.tensor_shape.dim) != 1:
            return None
        raw = getattr(tensor, field)
        if not raw:  # TensorFlow's convention: no value means zeros.
            return 0.0
        # half_val holds the float16 bit patterns as integers.
        array = np.array(raw, dtype=np.uint16).view(np.float16) if field == "half_val" else raw
    return float(array[0]) if len(array) == 1 else None


def _scalar_value(value: summary_pb2.Summary.Value) -> float | None:
    """Return the scalar a summary value holds (torch/tensorboardX or TF2 form), else None."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return value.simple_value
    # TF2 writes the plugin metadata with (at least) the first value of a tag; a value without it
    # is taken as a scalar if it is a one-element float tensor.
    if kind == "tensor" and value.metadata.plugin_data.plugin_name in _SCALAR_PLUGINS:
        return _tensor_scalar(value.tensor)
    return None


def _tag_pattern(tag: str) -> bytes:
    """Encode ``Summary.Value.tag = tag`` as protobuf does (key of field 1, length, bytes)."""
    encoded = tag.encode()
    length = len(encoded)
    varint = bytearray()
    while True:
        low, length = length & 0x7F, length >> 7
        varint.append(low | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(varint) + encoded


class _Columns:
    """Growable parallel numpy arrays (amortized O(1) append by capacity doubling)."""

    def __init__(self, dtypes: dict[str, type[np.generic]]) -> None:
        self._size = 0
        self._arrays = {name: np.empty(256, dtype=dtype) for name, dtype in dtypes.items()}

    def __len__(self) -> int:
        return self._size

    def view(self, name: str) -> np.ndarray:
        """Return the filled part of one column, read-only (later appends do not change it)."""
        array = self._arrays[name][: self._size]
        array.flags.writeable = False
        return array

    def extend(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows given as one array per column."""
        added = len(next(iter(columns.values())))
        needed = self._size + added
        capacity = len(next(iter(self._arrays.values())))
        if needed > capacity:
            capacity = max(needed, 2 * capacity)
            for name, old in self._arrays.items():
                new = np.empty(capacity, dtype=old.dtype)
                new[: self._size] = old[: self._size]
                self._arrays[name] = new
        for name, values in columns.items():
            self._arrays[name][self._size : needed] = values
        self._size = needed

    def replace(self, columns: dict[str, np.ndarray]) -> None:
        """Replace all rows, in fresh arrays (views handed out earlier stay as they were)."""
        self._size = 0
        self._arrays = {name: np.empty(256, dtype=old.dtype) for name, old in self._arrays.items()}
        self.extend(columns)


@dataclass
class _EventFile:
    """Reading state of one event file."""

    path: str
    fid: int  # identifies this reading of the file (a restarted file gets a new one)
    ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file being read
    offset: int = 0  # start of the first record not read yet
    seen_size: int = -1  # file size when last read; an unchanged size means nothing new
    fingerprint: bytes = b""
    max_wall_time: float = -math.inf
    count: int = 0  # points of the tag read from this file so far
    records: int = 0  # records of any tag framed in this file so far
    corrupt_at: int | None = None  # offset of the corrupt record reading stopped at (warned once)


@dataclass
class _DirListing:
    """What the last listing of a directory found."""

    mtime_ns: int
    listed_ns: int
    subdirs: tuple[str, ...]


class ScalarTail:
    """Exact, incremental reader of one scalar tag in all TensorBoard event files under a directory.

    Event files are searched for recursively. Every point of the tag is kept (no sampling), with
    its step and wall time. :meth:`poll` reads only the bytes appended to the event files since
    the previous poll and picks up event files (and directories) created later; a poll with
    nothing new only stats the known files and directories.

    Several event files (a restarted script, two writers) are merged by wall time, which is the
    order the points were logged in: step order would interleave the points of a restarted run,
    whose steps start again from 0, with those of the first run. To keep each file's points in
    the order they were written even if the clock stepped back, a point's sort key is the
    largest wall time of its file up to and including it; ties go to the file whose path sorts
    first, then to file order. The result depends only on the files' contents, not on when they
    were polled.

    A record being written at the end of a file is left for a later poll. A corrupt record
    header stops the reading of that file (it is retried whenever the file changes size); a
    record of the tag whose data fails its CRC is skipped with a warning (see
    :attr:`skipped_records`). A file that shrinks, or is replaced or rewritten, is read again
    from the start, and the points read from it before are dropped.

    Not thread-safe: poll and read from one thread (or lock around them).
    """

    def __init__(
        self, logdir: str | os.PathLike[str], tag: str, *, verify_crc: bool = True
    ) -> None:
        """Create a reader; nothing is read before the first :meth:`poll`.

        Args:
            logdir: The directory to search for ``events.out.tfevents.*`` files (recursively). It
                need not exist yet.
            tag: The scalar tag, e.g. ``"charts/episodic_return"``.
            verify_crc: Check the masked CRC of every record's length, and of the data of every
                record that holds the tag (in numpy; about 20% of the read time). Without it a
                corrupt length is told from a record still being written only if it is absurd
                (2 GiB or more), and a corrupt record of the tag may decode to wrong values.

        """
        self._root = os.fspath(logdir)
        self._tag = tag
        self._pattern = _tag_pattern(tag)
        self._verify_crc = verify_crc
        self._files: dict[str, _EventFile] = {}
        self._paths: list[str] = []  # sorted keys of _files
        self._path_of_fid: dict[int, str] = {}
        self._next_fid = 0
        self._dirs: dict[str, _DirListing] = {}
        self._points = _Columns(
            {
                name: np.int64 if name in ("steps", "fids", "seqs") else np.float64
                for name in _COLUMNS
            }
        )
        self._last_step: int | None = None
        self._skipped = 0

    def __repr__(self) -> str:
        return f"ScalarTail({self._root!r}, {self._tag!r}, points={len(self)})"

    def __len__(self) -> int:
        return len(self._points)

    @property
    def tag(self) -> str:
        """The scalar tag read."""
        return self._tag

    @property
    def steps(self) -> np.ndarray:
        """The step of every point so far (``int64``, read-only), in order."""
        return self._points.view("steps")

    @property
    def values(self) -> np.ndarray:
        """The value of every point so far (``float64``, read-only), in order."""
        return self._points.view("values")

    @property
    def wall_times(self) -> np.ndarray:
        """The wall time (seconds since the epoch) of every point (``float64``, read-only)."""
        return self._points.view("wall_times")

    @property
    def last_step(self) -> int | None:
        """The largest step of the tag seen so far; None if no point."""
        return self._last_step

    @property
    def records_read(self) -> int:
        """Records of any tag read so far from the event files (activity of the writer)."""
        return sum(f.records for f in self._files.values())

    @property
    def event_files(self) -> list[str]:
        """Paths of the event files found so far, sorted."""
        return list(self._paths)

    @property
    def skipped_records(self) -> int:
        """Records that held the tag but failed their data CRC or did not parse."""
        return self._skipped

    def damage(self) -> list[str]:
        """What could not be read, one line each; empty when every byte was read.

        Call it once the writer has ended (while it runs, a record being written at the end of
        a file is normal). It names each file that stops at a corrupt record or ends in a
        partial one, with the bytes left unread and about how many records those held (from
        the file's mean record size), and the records of the tag skipped for a bad CRC.
        """
        lines = []
        for path in self._paths:
            state = self._files[path]
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            unread = size - state.offset
            if unread <= 0:
                continue
            name = os.path.basename(path)
            if state.corrupt_at is not None:
                records = state.records and round(unread / (state.offset / state.records))
                lines.append(
                    f"{name}: a corrupt record at byte {state.offset} stopped the reading; "
                    f"{unread} bytes after it (about {max(records or 1, 1)} records) were lost"
                )
            else:
                lines.append(
                    f"{name}: it ends in a partial record ({unread} bytes): the script stopped "
                    "while writing it, and what it held was lost"
                )
        if self._skipped:
            lines.append(
                f"{self._skipped} records of {self._tag!r} failed their CRC and were skipped"
            )
        return lines

    def last_n_mean(self, n: int) -> float | None:
        """Mean of the last n values (all if fewer); None if no point.

        Args:
            n: How many of the latest values to average; at least 1.

        Returns:
            The mean (NaN if one of them is NaN), or None before the first point.

        Raises:
            ValueError: If ``n < 1``.

        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not len(self):
            return None
        return float(np.mean(self.values[-n:]))

    def poll(self) -> int:
        """Read what is new on disk; return how many new points of the tag arrived.

        Returns:
            The number of points added. If a file had to be read again from the start (it shrank
            or was replaced), its points are counted again; ``len(self)`` is authoritative.

        """
        self._discover()
        batches: list[tuple[_EventFile, dict[str, np.ndarray]]] = []
        dropped: list[int] = []
        for path in self._paths:
            state = self._files[path]
            try:
                stat = os.stat(path)
            except OSError:  # removed: keep what was read from it
                continue
            ident = (stat.st_dev, stat.st_ino)
            if state.ident is not None and (ident != state.ident or stat.st_size < state.offset):
                state = self._restart(state, dropped)
            elif stat.st_size == state.seen_size:
                continue
            try:
                batch = self._read(state, dropped)
            except OSError as error:
                _log.debug("cannot read %s (retrying next poll): %s", path, error)
                continue
            if batch is not None:
                batches.append(batch)
        return self._merge(batches, dropped)

    def _discover(self) -> None:
        """Find new event files, listing only directories that (may) have changed."""
        stack = [self._root]
        while stack:
            directory = stack.pop()
            try:
                stat = os.stat(directory)
            except OSError:
                self._dirs.pop(directory, None)
                continue
            known = self._dirs.get(directory)
            if (
                known is not None
                and known.mtime_ns == stat.st_mtime_ns
                and known.listed_ns - known.mtime_ns > _DIR_MTIME_SLACK_NS
            ):
                stack.extend(known.subdirs)
                continue
            listed_ns = time.time_ns()
            subdirs: list[str] = []
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                subdirs.append(entry.path)
                            elif (
                                entry.name.startswith(_EVENT_FILE_PREFIX)
                                and entry.path not in self._files
                                and entry.is_file()
                            ):
                                self._add_file(entry.path)
                        except OSError:
                            continue
            except OSError:  # not a directory, or unreadable
                continue
            self._dirs[directory] = _DirListing(stat.st_mtime_ns, listed_ns, tuple(subdirs))
            stack.extend(subdirs)

    def _add_file(self, path: str) -> _EventFile:
        state = _EventFile(path, self._next_fid)
        self._next_fid += 1
        if path not in self._files:
            bisect.insort(self._paths, path)
        self._files[path] = state
        self._path_of_fid[state.fid] = path
        return state

    def _restart(self, state: _EventFile, dropped: list[int]) -> _EventFile:
        """Forget a file's points and read it again from the start."""
        _log.info("event file %s was truncated or replaced; reading it again", state.path)
        dropped.append(state.fid)
        del self._path_of_fid[state.fid]
        return self._add_file(state.path)

    def _read(
        self, state: _EventFile, dropped: list[int]
    ) -> tuple[_EventFile, dict[str, np.ndarray]] | None:
        """Read the new complete records of one file; return the tag's points in them."""
        with open(state.path, "rb", buffering=0) as file:
            stat = os.fstat(file.fileno())
            ident = (stat.st_dev, stat.st_ino)
            head = file.read(_FINGERPRINT_BYTES)
            if state.ident is not None and (
                ident != state.ident
                or stat.st_size < state.offset
                or head[: len(state.fingerprint)] != state.fingerprint
            ):
                state = self._restart(state, dropped)
            state.ident = ident
            if len(head) > len(state.fingerprint):
                state.fingerprint = head
            chunks: list[dict[str, np.ndarray]] = []

            def on_chunk(buf: bytes, frames: _Frames, offset: int) -> None:
                state.records += len(frames.starts)
                points = self._extract(buf, frames, state.path, offset)
                if points is not None:
                    chunks.append(points)

            state.offset, corrupt = _read_records(file, state.offset, self._verify_crc, on_chunk)
            # Only now: a read that failed half-way is tried again even if the size stays.
            state.seen_size = stat.st_size
        if corrupt and state.corrupt_at != state.offset:
            _log.warning(
                "corrupt record at byte %d of %s: reading it stops there (retried when it changes)",
                state.offset,
                state.path,
            )
        state.corrupt_at = state.offset if corrupt else None
        if not chunks:
            return None
        if len(chunks) == 1:
            return state, chunks[0]
        return state, {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}

    def _extract(
        self, buf: bytes, frames: _Frames, path: str, base: int
    ) -> dict[str, np.ndarray] | None:
        """Decode the records of ``frames`` that hold the tag; return its points, in order.

        ``buf`` is the chunk of ``path`` at offset ``base`` (for warnings).
        """
        pattern = self._pattern
        hits: list[int] = []
        found = buf.find(pattern, 0, frames.end)
        while found >= 0:
            hits.append(found)
            found = buf.find(pattern, found + 1, frames.end)
        if not hits:
            return None
        hit_at = np.array(hits, dtype=np.int64)
        index = np.searchsorted(frames.starts, hit_at, side="right") - 1
        data_starts = frames.starts[index] + _HEADER_BYTES
        inside = (
            (index >= 0)
            & (hit_at >= data_starts)
            & (hit_at + len(pattern) <= data_starts + frames.lengths[index])
        )
        index = index[inside]
        records = index[np.flatnonzero(np.diff(index, prepend=-1))]  # distinct (index is sorted)
        starts = frames.starts[records] + _HEADER_BYTES
        lengths = frames.lengths[records]
        if self._verify_crc:
            valid = self._check_data_crc(buf, starts, lengths, path, base)
            starts, lengths = starts[valid], lengths[valid]
        if len(starts) >= _NUMPY_MIN_RECORDS:
            simple, steps, values, wall_times = _decode_simple(
                buf, starts, lengths, hit_at[inside], len(pattern)
            )
        else:
            simple = np.zeros(len(starts), dtype=bool)
            steps, values, wall_times = (np.empty(0, dtype=t) for t in (np.int64, float, float))
        if simple.all():
            return {"steps": steps, "values": values, "wall_times": wall_times}
        # The other records, through protobuf; ``at`` puts their points back in record order.
        at, more_steps, more_values, more_walls = [], [], [], []
        parse = event_pb2.Event.FromString
        tag = self._tag
        view = memoryview(buf)
        rest = ~simple
        for start, length in zip(starts[rest].tolist(), lengths[rest].tolist(), strict=True):
            try:
                event = parse(view[start : start + length])
            except DecodeError:
                self._skip(path, base + start - _HEADER_BYTES, "does not parse")
                continue
            for value in event.summary.value:
                if value.tag == tag:
                    scalar = _scalar_value(value)
                    if scalar is not None:
                        at.append(start)
                        more_steps.append(event.step)
                        more_values.append(scalar)
                        more_walls.append(event.wall_time)
        order = np.argsort(np.concatenate([starts[simple], at]), kind="stable")
        return {
            "steps": np.concatenate([steps, np.array(more_steps, dtype=np.int64)])[order],
            "values": np.concatenate([values, np.array(more_values, dtype=np.float64)])[order],
            "wall_times": np.concatenate([wall_times, np.array(more_walls, dtype=np.float64)])[
                order
            ],
        }

    def _check_data_crc(
        self, buf: bytes, starts: np.ndarray, lengths: np.ndarray, path: str, base: int
    ) -> np.ndarray:
        """Tell which records (given by data offset and length) have a valid data CRC."""
        data = np.frombuffer(buf, dtype=np.uint8)
        short = lengths <= _VECTOR_CRC_MAX_BYTES
        computed = np.empty(len(starts), dtype=np.uint32)
        computed[short] = _masked_crc32c_many(data, starts[short], lengths[short])
        for i in np.flatnonzero(~short).tolist():
            begin = int(starts[i])
            computed[i] = _masked_crc32c_bytes(buf[begin : begin + int(lengths[i])])
        valid = computed == _gather(buf, starts + lengths, "<u4")
        for i in np.flatnonzero(~valid).tolist():
            self._skip(path, base + int(starts[i]) - _HEADER_BYTES, "fails its data CRC")
        return valid

    def _skip(self, path: str, offset: int, why: str) -> None:
        self._skipped += 1
        _log.warning(
            "skipping the record of %r at byte %d of %s: it %s", self._tag, offset, path, why
        )

    def _merge(
        self, batches: list[tuple[_EventFile, dict[str, np.ndarray]]], dropped: list[int]
    ) -> int:
        """Add the new points of each file in merged order; return how many were added."""
        points = self._points
        if dropped:
            keep = ~np.isin(points.view("fids"), dropped)
            points.replace({name: points.view(name)[keep] for name in _COLUMNS})
            self._last_step = int(points.view("steps").max()) if len(points) else None
        if not batches:
            return 0
        # Batches come in sorted path order, so the batch index ranks them like their paths.
        for rank, (state, columns) in enumerate(batches):
            count = len(columns["steps"])
            keys = np.maximum.accumulate(np.maximum(columns["wall_times"], state.max_wall_time))
            columns["keys"] = keys
            columns["fids"] = np.full(count, state.fid, dtype=np.int64)
            columns["seqs"] = np.arange(state.count, state.count + count, dtype=np.int64)
            columns["ranks"] = np.full(count, rank, dtype=np.int64)
            state.count += count
            state.max_wall_time = float(keys[-1])
        new = {name: np.concatenate([c[name] for _, c in batches]) for name in (*_COLUMNS, "ranks")}
        if len(batches) > 1:
            order = np.lexsort((new["seqs"], new["ranks"], new["keys"]))
            new = {name: array[order] for name, array in new.items()}
        del new["ranks"]
        added = len(new["steps"])
        if len(points) and not self._follows(new):
            merged = {name: np.concatenate([points.view(name), new[name]]) for name in _COLUMNS}
            paths = sorted({self._path_of_fid[fid] for fid in np.unique(merged["fids"]).tolist()})
            rank_of = {path: rank for rank, path in enumerate(paths)}
            ranks = np.array(
                [rank_of[self._path_of_fid[fid]] for fid in merged["fids"].tolist()],
                dtype=np.int64,
            )
            order = np.lexsort((merged["seqs"], ranks, merged["keys"]))
            points.replace({name: array[order] for name, array in merged.items()})
        else:
            points.extend(new)
        top = int(new["steps"].max())
        self._last_step = top if self._last_step is None else max(self._last_step, top)
        return added

    def _follows(self, new: dict[str, np.ndarray]) -> bool:
        """Tell whether the first new point sorts after the last one held (so appending is safe)."""
        points = self._points
        last = len(points) - 1
        held = (
            float(points.view("keys")[last]),
            self._path_of_fid[int(points.view("fids")[last])],
            int(points.view("seqs")[last]),
        )
        first = (float(new["keys"][0]), self._path_of_fid[int(new["fids"][0])], int(new["seqs"][0]))
        return first > held


def scalar_tags(logdir: str | os.PathLike[str]) -> list[str]:
    """Sorted names of all scalar tags in the event files under logdir (recursively).

    The slow path: every record is decoded. Meant for error messages such as "no metric X; the
    run logged: a, b, c". Scalars are values in the torch/tensorboardX form (``simple_value``) or
    the TF2 form (a one-element float tensor of the ``scalars`` plugin). Unreadable files and
    corrupt or incomplete records are skipped.

    Args:
        logdir: The directory to search; a missing directory has no tags.

    Returns:
        The distinct tag names, sorted.

    """
    tags: set[str] = set()
    parse = event_pb2.Event.FromString

    def on_chunk(buf: bytes, frames: _Frames, _offset: int) -> None:
        view = memoryview(buf)
        for start, length in zip(frames.starts.tolist(), frames.lengths.tolist(), strict=True):
            begin = start + _HEADER_BYTES
            try:
                event = parse(view[begin : begin + length])
            except DecodeError:
                continue
            for value in event.summary.value:
                if value.tag not in tags and _scalar_value(value) is not None:
                    tags.add(value.tag)

    for directory, _, names in os.walk(logdir):
        for name in names:
            if name.startswith(_EVENT_FILE_PREFIX):
                try:
                    with open(os.path.join(directory, name), "rb", buffering=0) as file:
                        _read_records(file, 0, True, on_chunk)
                except OSError:
                    continue
    return sorted(tags)


#: The text summary tag CleanRL's scripts log their arguments under (``writer.add_text``; torch
#: appends ``/text_summary`` to the tag).
HYPERPARAMETERS_TAG = "hyperparameters"
_TEXT_TAGS = (HYPERPARAMETERS_TAG, HYPERPARAMETERS_TAG + "/text_summary")


def _text_value(value: summary_pb2.Summary.Value) -> str | None:
    """The string of a text summary (plugin ``text``, a string tensor), else None."""
    if value.WhichOneof("value") != "tensor" or value.tensor.dtype != types_pb2.DT_STRING:
        return None
    if value.metadata.plugin_data.plugin_name not in ("text", ""):
        return None
    if not value.tensor.string_val:
        return None
    return value.tensor.string_val[0].decode("utf-8", errors="replace")


def reported_hyperparameters(logdir: str | os.PathLike[str]) -> dict[str, str] | None:
    r"""The ``|param|value|`` table a script logged as its ``hyperparameters`` text summary.

    CleanRL's scripts log ``writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" +
    rows)`` with one ``|name|value|`` row per argument as the script parsed it. Only records
    whose bytes contain the tag are decoded, so a long event file costs a byte search.

    Args:
        logdir: The experiment's folder (searched recursively).

    Returns:
        ``{name: value as text}`` from the last such summary, or ``None`` when the script logged
        none.

    """
    found: list[str] = []
    needle = HYPERPARAMETERS_TAG.encode()
    parse = event_pb2.Event.FromString

    def on_chunk(buf: bytes, frames: _Frames, _offset: int) -> None:
        if needle not in buf:
            return
        view = memoryview(buf)
        for start, length in zip(frames.starts.tolist(), frames.lengths.tolist(), strict=True):
            begin = start + _HEADER_BYTES
            if buf.find(needle, begin, begin + length) < 0:
                continue
            try:
                event = parse(view[begin : begin + length])
            except DecodeError:
                continue
            for value in event.summary.value:
                if value.tag in _TEXT_TAGS:
                    text = _text_value(value)
                    if text is not None:
                        found.append(text)

    for directory, _, names in sorted(os.walk(logdir)):
        for name in sorted(names):
            if name.startswith(_EVENT_FILE_PREFIX):
                try:
                    with open(os.path.join(directory, name), "rb", buffering=0) as file:
                        _read_records(file, 0, True, on_chunk)
                except OSError:
                    continue
    if not found:
        return None
    return parse_markdown_table(found[-1])


def parse_markdown_table(text: str) -> dict[str, str]:
    r"""The rows of a two-column Markdown table (``|name|value|``), header and rule left out.

    Example:
        >>> parse_markdown_table("|param|value|\n|-|-|\n|learning_rate|0.00025|\n|seed|1|")
        {'learning_rate': '0.00025', 'seed': '1'}
    """
    rows: dict[str, str] = {}
    for number, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = line.strip("|").split("|", 1)
        if len(cells) != 2:
            continue
        name, value = cells[0].strip(), cells[1].strip()
        if number == 0 and (name, value) == ("param", "value"):
            continue
        if set(name) <= set("-: ") and set(value) <= set("-: "):
            continue
        rows[name] = value
    return rows
