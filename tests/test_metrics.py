"""Tests of nbtune._metrics: the exact, incremental TensorBoard scalar reader.

Event files are written by TensorBoard's own writers (``EventFileWriter``, and its synchronous
core ``RecordWriter`` for the big file) and, if torch is installed, by torch's ``SummaryWriter``;
never by nbtune's code.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter

from nbtune import _metrics
from nbtune._metrics import ScalarTail, scalar_tags

TAG = "charts/episodic_return"
WALL0 = 1.7e9


def scalar_event(tag: str, step: int, value: float, wall_time: float) -> event_pb2.Event:
    value_proto = summary_pb2.Summary.Value(tag=tag, simple_value=value)
    return event_pb2.Event(
        wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[value_proto])
    )


def tensor_event(
    tag: str,
    step: int,
    wall_time: float,
    tensor: tensor_pb2.TensorProto,
    plugin: str | None = "scalars",
) -> event_pb2.Event:
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    return event_pb2.Event(
        wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[value])
    )


def write_events(directory: Path, events: Iterable[event_pb2.Event], suffix: str = "") -> Path:
    """Write events with TensorBoard's EventFileWriter; return the event file."""
    directory.mkdir(parents=True, exist_ok=True)
    before = set(directory.iterdir())
    writer = EventFileWriter(str(directory), max_queue_size=1_000_000, filename_suffix=suffix)
    for event in events:
        writer.add_event(event)
    writer.close()
    (path,) = set(directory.iterdir()) - before
    return path


def event_file_bytes(tmp_path: Path, events: Iterable[event_pb2.Event]) -> bytes:
    """The bytes of an event file holding ``events``, as EventFileWriter writes it."""
    return write_events(tmp_path / "source", events).read_bytes()


def points(count: int, *, first_step: int = 0, wall0: float = WALL0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "steps": np.arange(first_step, first_step + count, dtype=np.int64) * 128,
        # float32-exact values: simple_value is a float32.
        "values": rng.normal(size=count).astype(np.float32).astype(np.float64),
        "wall_times": wall0 + np.arange(count) * 0.25,
    }


def events_of(pts: dict, tag: str = TAG) -> list[event_pb2.Event]:
    return [
        scalar_event(tag, int(s), float(v), float(w))
        for s, v, w in zip(pts["steps"], pts["values"], pts["wall_times"], strict=True)
    ]


def concat(*parts: dict) -> dict:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def assert_points(tail: ScalarTail, expected: dict) -> None:
    np.testing.assert_array_equal(tail.steps, expected["steps"])
    np.testing.assert_array_equal(tail.values, expected["values"])
    np.testing.assert_array_equal(tail.wall_times, expected["wall_times"])
    assert len(tail) == len(expected["steps"])


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A run with 25,000 points of TAG (more than EventAccumulator's 10,000-point reservoir)."""
    logdir = tmp_path_factory.mktemp("long") / "runs" / "CartPole-v1__ppo__1__1700000000"
    logdir.mkdir(parents=True)
    expected = points(25_000)
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)  # the core of EventFileWriter, without its writer thread
    writer.write(event_pb2.Event(wall_time=WALL0, file_version="brain.Event:2").SerializeToString())
    for i, event in enumerate(events_of(expected)):
        writer.write(event.SerializeToString())
        if i % 50 == 0:
            writer.write(scalar_event("losses/value_loss", i, 0.5, WALL0).SerializeToString())
    (logdir / "events.out.tfevents.1700000000.host.1.0").write_bytes(buffer.getvalue())
    return logdir.parent.parent, expected


@pytest.mark.parametrize("verify_crc", [True, False])
def test_reads_every_point_of_a_long_run(long_run: tuple[Path, dict], verify_crc: bool) -> None:
    root, expected = long_run
    tail = ScalarTail(root, TAG, verify_crc=verify_crc)
    assert tail.poll() == 25_000
    assert_points(tail, expected)
    assert tail.steps.dtype == np.int64
    assert tail.values.dtype == np.float64
    assert tail.wall_times.dtype == np.float64
    assert tail.last_n_mean(50) == float(np.mean(expected["values"][-50:]))
    assert tail.last_n_mean(10**9) == float(np.mean(expected["values"]))
    assert tail.last_step == int(expected["steps"].max())
    assert tail.poll() == 0
    assert tail.skipped_records == 0


@pytest.mark.parametrize("chunk", [40, 1000])  # smaller than a record, and a few records
def test_files_larger_than_a_read_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(_metrics, "_READ_CHUNK_BYTES", chunk)
    expected = points(300)
    noise = [scalar_event("losses/value_loss", 1, 0.5, WALL0)] * 300
    events = [e for pair in zip(events_of(expected), noise, strict=True) for e in pair]
    write_events(tmp_path, events)
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 300
    assert_points(tail, expected)
    assert scalar_tags(tmp_path) == ["charts/episodic_return", "losses/value_loss"]


def test_torch_summary_writer(tmp_path: Path) -> None:
    from _support import skip_or_fail

    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        skip_or_fail("torch is not installed (pip install torch==2.13.0 on CPU machines)")

    logdir = tmp_path / "runs" / "torch"
    writer = SummaryWriter(str(logdir))
    tail = ScalarTail(tmp_path, TAG)
    expected = points(1_500)
    for i, (step, value, wall) in enumerate(
        zip(expected["steps"], expected["values"], expected["wall_times"], strict=True)
    ):
        if i == 700:  # read while the run is live
            writer.flush()
            assert tail.poll() == 700
        writer.add_scalar(TAG, float(value), int(step), walltime=float(wall))
        writer.add_scalar("losses/entropy", 1.0, int(step), walltime=float(wall))
        if i % 100 == 0:  # the TF2-style tensor form
            writer.add_scalar(
                "charts/sps", float(i), int(step), walltime=float(wall), new_style=True
            )
    writer.close()
    assert tail.poll() == 800
    assert_points(tail, expected)
    sps = ScalarTail(tmp_path, "charts/sps")
    assert sps.poll() == 15
    np.testing.assert_array_equal(sps.values, np.arange(0, 1_500, 100, dtype=np.float64))
    assert scalar_tags(tmp_path) == ["charts/episodic_return", "charts/sps", "losses/entropy"]


def test_incremental_reads_only_new_points(tmp_path: Path) -> None:
    logdir = tmp_path / "runs" / "a"
    logdir.mkdir(parents=True)
    writer = EventFileWriter(str(logdir))
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 0  # only the file_version record so far
    first, second = points(300), points(200, first_step=300, wall0=WALL0 + 1000)
    for event in events_of(first):
        writer.add_event(event)
    writer.flush()
    assert tail.poll() == 300
    assert tail.poll() == 0
    assert tail.poll() == 0
    for event in events_of(second):
        writer.add_event(event)
    writer.flush()
    assert tail.poll() == 200
    assert tail.poll() == 0
    writer.close()
    assert tail.poll() == 0
    assert_points(tail, concat(first, second))


def record_boundaries(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += struct.unpack_from("<Q", data, pos)[0] + 16
    assert pos == len(data)
    return offsets


def test_arrays_handed_out_stay_valid_and_read_only(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    first, second = points(10), points(2000, first_step=10, wall0=WALL0 + 100)
    path = write_events(logdir, events_of(first))
    tail = ScalarTail(logdir, TAG)
    tail.poll()
    held = tail.values
    data = event_file_bytes(tmp_path, events_of(second))
    with path.open("ab") as file:
        file.write(data[record_boundaries(data)[1] :])  # without the file_version record
    assert tail.poll() == 2000
    np.testing.assert_array_equal(held, first["values"])
    with pytest.raises(ValueError, match="read-only"):
        tail.values[0] = 1.0


def test_half_written_record_is_read_once_complete(tmp_path: Path) -> None:
    expected = points(40)
    data = event_file_bytes(tmp_path, events_of(expected))
    starts = record_boundaries(data)
    record = starts[5]  # a record of TAG
    # Cut inside the length, its CRC, the data, the data CRC, and between two records.
    cuts = [record + 3, record + 8, record + 10, record + 12, record + 20, starts[6] - 2]
    cuts += [starts[6] - 1, starts[6], len(data) - 1]
    for number, cut in enumerate(cuts):
        logdir = tmp_path / f"cut{number}"
        logdir.mkdir()
        path = logdir / "events.out.tfevents.1.host"
        path.write_bytes(data[:cut])
        tail = ScalarTail(logdir, TAG)
        before = tail.poll()
        assert tail.poll() == 0
        with path.open("ab") as file:
            file.write(data[cut:])
        assert before + tail.poll() == 40, cut
        assert_points(tail, expected)


def test_byte_by_byte_growth(tmp_path: Path) -> None:
    expected = points(6)
    data = event_file_bytes(tmp_path, events_of(expected))
    logdir = tmp_path / "run"
    logdir.mkdir()
    path = logdir / "events.out.tfevents.2.host"
    tail = ScalarTail(logdir, TAG)
    total = 0
    with path.open("wb", buffering=0) as file:
        for byte in data:
            file.write(bytes([byte]))
            total += tail.poll()
            assert total == len(tail)
    assert total == 6
    assert_points(tail, expected)
    assert tail.skipped_records == 0


def test_event_file_appearing_later_in_a_subdirectory(tmp_path: Path) -> None:
    tail = ScalarTail(tmp_path / "runs", TAG)  # the script creates runs/<name>/ after it starts
    assert tail.poll() == 0
    (tmp_path / "runs").mkdir()
    assert tail.poll() == 0
    expected = points(50)
    write_events(tmp_path / "runs" / "CartPole-v1__ppo__1", events_of(expected))
    assert tail.poll() == 50
    assert_points(tail, expected)
    later = points(7, first_step=50, wall0=WALL0 + 1000)
    write_events(tmp_path / "runs" / "CartPole-v1__ppo__1" / "deeper" / "still", events_of(later))
    assert tail.poll() == 7
    assert_points(tail, concat(expected, later))
    assert len(tail.event_files) == 2
    # Directories untouched for a while are not listed again, only stat'ed; a new file changes
    # its directory's mtime.
    for directory in [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]:
        if directory.is_dir():
            os.utime(directory, (WALL0, WALL0))
    assert tail.poll() == 0
    assert tail.poll() == 0
    last = points(3, first_step=57, wall0=WALL0 + 2000)
    write_events(tmp_path / "runs" / "CartPole-v1__ppo__1", events_of(last), suffix=".new")
    assert tail.poll() == 3
    assert len(tail.event_files) == 3


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    for logdir in (tmp_path / "missing", tmp_path):
        tail = ScalarTail(logdir, TAG)
        assert tail.poll() == 0
        assert len(tail) == 0
        assert tail.last_n_mean(50) is None
        assert tail.last_step is None
        assert tail.steps.dtype == np.int64 and tail.steps.shape == (0,)
        assert tail.values.shape == (0,) and tail.wall_times.shape == (0,)
        assert scalar_tags(logdir) == []
    (tmp_path / "events.out.tfevents.0.empty").write_bytes(b"")
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 0
    assert tail.last_n_mean(1) is None


def test_last_n_mean(tmp_path: Path) -> None:
    expected = points(30)
    write_events(tmp_path, events_of(expected))
    tail = ScalarTail(tmp_path, TAG)
    tail.poll()
    assert tail.last_n_mean(1) == expected["values"][-1]
    assert tail.last_n_mean(30) == float(np.mean(expected["values"]))
    assert tail.last_n_mean(31) == float(np.mean(expected["values"]))
    with pytest.raises(ValueError):
        tail.last_n_mean(0)


def float_tensor(value: float, dtype: int = types_pb2.DT_FLOAT) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    if dtype == types_pb2.DT_FLOAT:
        tensor.float_val.append(value)
    elif dtype == types_pb2.DT_DOUBLE:
        tensor.double_val.append(value)
    else:
        tensor.half_val.append(int(np.array(value, dtype=np.float16).view(np.uint16)))
    return tensor


def test_tensor_form_scalars(tmp_path: Path) -> None:
    content = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE, tensor_content=np.array([0.1], dtype="<f8").tobytes()
    )
    content.tensor_shape.SetInParent()  # a scalar: shape []
    histogram = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE, tensor_content=np.zeros((2, 3), dtype="<f8").tobytes()
    )
    histogram.tensor_shape.dim.add(size=2)
    histogram.tensor_shape.dim.add(size=3)
    text = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"hello"])
    events = [
        tensor_event(TAG, 1, WALL0 + 1, float_tensor(1.5)),  # tf.summary.scalar
        tensor_event(TAG, 2, WALL0 + 2, float_tensor(2.5, types_pb2.DT_DOUBLE)),
        tensor_event(TAG, 3, WALL0 + 3, content),  # tensor_content
        tensor_event(TAG, 4, WALL0 + 4, float_tensor(0.5, types_pb2.DT_HALF)),
        tensor_event(TAG, 5, WALL0 + 5, float_tensor(-4.0), plugin=None),  # metadata only once
        tensor_event(TAG, 6, WALL0 + 6, histogram, plugin="histograms"),  # not a scalar
        tensor_event(TAG, 7, WALL0 + 7, text, plugin="text"),  # not a scalar
        tensor_event("charts/sps", 8, WALL0 + 8, float_tensor(100.0)),
        scalar_event(TAG, 9, 9.0, WALL0 + 9),  # mixed with the simple form
    ]
    write_events(tmp_path, events)
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 6
    np.testing.assert_array_equal(tail.steps, [1, 2, 3, 4, 5, 9])
    np.testing.assert_array_equal(tail.values, [1.5, 2.5, 0.1, 0.5, -4.0, 9.0])
    np.testing.assert_array_equal(tail.wall_times, WALL0 + np.array([1, 2, 3, 4, 5, 9]))
    assert scalar_tags(tmp_path) == ["charts/episodic_return", "charts/sps"]


def test_other_tags_and_other_summaries_are_ignored(tmp_path: Path) -> None:
    expected = points(100)
    mine = events_of(expected)
    noise: list[event_pb2.Event] = []
    for i, tag in enumerate([TAG + "_x", "x" + TAG, "charts/episodic", "loss", TAG.upper()]):
        noise.append(scalar_event(tag, i, 100.0 + i, WALL0 + i))
    histogram = summary_pb2.Summary.Value(tag=TAG, histo=summary_pb2.HistogramProto(num=3))
    noise.append(
        event_pb2.Event(wall_time=WALL0, step=1, summary=summary_pb2.Summary(value=[histogram]))
    )
    noise.append(event_pb2.Event(wall_time=WALL0, step=1, file_version="brain.Event:2"))
    # Bytes that look like the encoded tag outside of a summary value.
    noise.append(event_pb2.Event(wall_time=WALL0, step=1, graph_def=b"\n\x16" + TAG.encode()))
    events = list(itertools.chain.from_iterable(zip(mine, itertools.cycle(noise))))
    # One event holding several values, ours among them.
    several = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(tag="loss", simple_value=-1.0),
            summary_pb2.Summary.Value(tag=TAG, simple_value=42.0),
            summary_pb2.Summary.Value(tag=TAG + "/2", simple_value=-2.0),
        ]
    )
    events.append(event_pb2.Event(wall_time=WALL0 + 99, step=99, summary=several))
    write_events(tmp_path, events)
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 101
    extra = {
        "steps": np.array([99]),
        "values": np.array([42.0]),
        "wall_times": np.array([WALL0 + 99]),
    }
    assert_points(tail, concat(expected, extra))
    assert scalar_tags(tmp_path) == sorted(
        [TAG, TAG + "_x", "x" + TAG, "charts/episodic", "loss", TAG.upper(), TAG + "/2"]
    )


def test_unusual_records(tmp_path: Path) -> None:
    # Enough records for the vectorized decoder, mixed with ones it leaves to protobuf.
    steps = [0, 1, 127, 128, 2**31, 2**62, 2**63 - 1, -1, -(2**40)] * 10
    events = [scalar_event(TAG, s, float(i), WALL0 + i) for i, s in enumerate(steps)]
    events.insert(3, scalar_event(TAG, 5, 3.0, 0.0))  # no wall time
    events.append(scalar_event("t" * 200, 5, 3.0, WALL0))  # a long tag
    write_events(tmp_path, events)
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == len(steps) + 1
    np.testing.assert_array_equal(tail.steps, [*steps[:3], 5, *steps[3:]])
    np.testing.assert_array_equal(tail.values, [0.0, 1.0, 2.0, 3.0, *range(3, len(steps))])
    walls = WALL0 + np.arange(len(steps))
    np.testing.assert_array_equal(tail.wall_times, [*walls[:3], 0.0, *walls[3:]])
    assert tail.last_step == 2**63 - 1
    long_tag = ScalarTail(tmp_path, "t" * 200)
    assert long_tag.poll() == 1 and long_tag.values[0] == 3.0


def test_merges_files_by_wall_time(tmp_path: Path) -> None:
    # A script that restarted: its steps start again at 0 in a second file.
    first = points(10, wall0=WALL0)
    restarted = points(10, wall0=WALL0 + 100, seed=1)
    # A second writer running alongside the first, in another directory.
    alongside = points(5, first_step=1000, wall0=WALL0 + 0.1, seed=2)
    write_events(tmp_path / "a", events_of(restarted), suffix=".2")
    tail = ScalarTail(tmp_path, TAG)
    assert tail.poll() == 10
    write_events(tmp_path / "a", events_of(first), suffix=".1")  # found later, logged earlier
    write_events(tmp_path / "b", events_of(alongside))
    assert tail.poll() == 15
    everything = concat(first, restarted, alongside)
    order = np.argsort(everything["wall_times"], kind="stable")
    expected = {key: array[order] for key, array in everything.items()}
    assert_points(tail, expected)
    assert tail.last_n_mean(10) == float(np.mean(restarted["values"]))
    # The same result when everything is read at once.
    fresh = ScalarTail(tmp_path, TAG)
    fresh.poll()
    assert_points(fresh, expected)


def test_random_growth_of_several_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    sources, contents = [], []
    for number in range(3):
        count = int(rng.integers(50, 150))
        pts = points(count, first_step=1000 * number, seed=number)
        # Interleaved wall times across files, and a clock stepping back now and then.
        pts["wall_times"] = WALL0 + np.sort(rng.uniform(0, 100, count)) - (rng.random(count) < 0.05)
        noise = [scalar_event("other", 0, 0.0, WALL0)] * 3
        events = [e for pair in zip(events_of(pts), noise * count, strict=False) for e in pair]
        contents.append(event_file_bytes(tmp_path / f"source{number}", events))
        sources.append(pts)
    paths = [tmp_path / "run" / name / "events.out.tfevents.0" for name in ("b", "a", "c/d")]
    written = [0, 0, 0]
    tail = ScalarTail(tmp_path / "run", TAG)
    total = 0
    while written != [len(c) for c in contents]:
        number = int(rng.integers(3))
        size = int(rng.integers(1, 400))
        paths[number].parent.mkdir(parents=True, exist_ok=True)
        with paths[number].open("ab") as file:
            file.write(contents[number][written[number] : written[number] + size])
        written[number] = min(written[number] + size, len(contents[number]))
        total += tail.poll()
        assert total == len(tail)
    # Expected: by (largest wall time of the file so far, path, order in the file).
    rows = []
    for pts, path in zip(sources, paths, strict=True):
        keys = np.maximum.accumulate(pts["wall_times"])
        for seq in range(len(keys)):
            point = (pts["steps"][seq], pts["values"][seq], pts["wall_times"][seq])
            rows.append(((keys[seq], str(path), seq), point))
    rows.sort(key=lambda row: row[0])
    expected = {
        name: np.array([point[k] for _, point in rows])
        for k, name in enumerate(("steps", "values", "wall_times"))
    }
    assert_points(tail, expected)
    fresh = ScalarTail(tmp_path / "run", TAG)
    fresh.poll()
    assert_points(fresh, expected)


def test_clock_stepping_back_keeps_file_order(tmp_path: Path) -> None:
    walls = [10.0, 11.0, 5.0, 12.0]  # the clock was set back once
    write_events(tmp_path / "a", [scalar_event(TAG, i, float(i), w) for i, w in enumerate(walls)])
    write_events(tmp_path / "b", [scalar_event(TAG, 100, 100.0, 11.5)])
    tail = ScalarTail(tmp_path, TAG)
    tail.poll()
    # 5.0 was logged after 11.0 in its file; it keeps its place (key 11.0, file a before b).
    np.testing.assert_array_equal(tail.steps, [0, 1, 2, 100, 3])


def test_truncated_or_replaced_file_is_read_again(tmp_path: Path) -> None:
    many, few = points(100), points(3, wall0=WALL0 + 500, seed=3)
    path = write_events(tmp_path / "run", events_of(many))
    tail = ScalarTail(tmp_path / "run", TAG)
    assert tail.poll() == 100
    path.write_bytes(event_file_bytes(tmp_path / "x", events_of(few)))  # smaller: truncated
    assert tail.poll() == 3
    assert_points(tail, few)
    # Replaced by another file (new inode) of the same name, larger than the offset.
    replacement = tmp_path / "replacement.tmp"
    replacement.write_bytes(event_file_bytes(tmp_path / "y", events_of(many)))
    os.replace(replacement, path)
    assert tail.poll() == 100
    assert_points(tail, many)


@pytest.mark.parametrize("count", [10, 300])  # per-record Python checks, and numpy ones
def test_corrupt_records(tmp_path: Path, caplog: pytest.LogCaptureFixture, count: int) -> None:
    expected = points(count)
    data = bytearray(event_file_bytes(tmp_path, events_of(expected)))
    starts = record_boundaries(bytes(data))
    # Flip a byte of the data of point 3 (record 4, after file_version): its data CRC fails.
    data[starts[4] + 14] ^= 0xFF
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.out.tfevents.3").write_bytes(bytes(data))
    tail = ScalarTail(tmp_path / "data", TAG)
    assert tail.poll() == count - 1
    assert tail.skipped_records == 1
    assert f"at byte {starts[4]} of" in caplog.text
    keep = np.arange(count) != 3
    assert_points(tail, {key: array[keep] for key, array in expected.items()})
    unchecked = ScalarTail(tmp_path / "data", TAG, verify_crc=False)
    unchecked.poll()
    assert len(unchecked) == count  # the flipped byte is in the wall time: it decodes, wrongly
    assert unchecked.wall_times[3] != expected["wall_times"][3]
    # A corrupt length stops the reading of the file there, with one warning.
    caplog.clear()
    data = bytearray(event_file_bytes(tmp_path / "again", events_of(expected)))
    data[starts[6] + 1] ^= 0x01
    path = tmp_path / "header" / "events.out.tfevents.4"
    path.parent.mkdir()
    path.write_bytes(bytes(data))
    tail = ScalarTail(tmp_path / "header", TAG)
    assert tail.poll() == 5
    assert f"corrupt record at byte {starts[6]} of" in caplog.text
    with path.open("ab") as file:
        file.write(bytes(data[starts[1] : starts[3]]))
    assert tail.poll() == 0
    assert caplog.text.count("corrupt record") == 1


@pytest.mark.parametrize("verify_crc", [True, False])
def test_garbage_length_at_the_end(tmp_path: Path, verify_crc: bool) -> None:
    expected = points(5)
    data = event_file_bytes(tmp_path, events_of(expected))
    for number, garbage in enumerate([b"\xff" * 40, b"\x00\x00\x00\x01" * 10]):
        logdir = tmp_path / f"run{number}"
        logdir.mkdir()
        (logdir / "events.out.tfevents.5").write_bytes(data + garbage)
        tail = ScalarTail(logdir, TAG, verify_crc=verify_crc)
        assert tail.poll() == 5
        assert tail.poll() == 0
        assert_points(tail, expected)
        assert scalar_tags(logdir) == [TAG]
