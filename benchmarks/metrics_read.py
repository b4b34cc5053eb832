"""Time reading one scalar tag of a long run: TensorBoard's readers against ``ScalarTail``.

Writes a synthetic event file like a long CleanRL run (``--records`` records round-robin over
``--tags`` scalar tags, one of them the metric), then times:

* ``EventAccumulator(size_guidance={"scalars": 0})`` (keep every scalar) load;
* ``RawEventFileLoader`` (TensorBoard's record reader, CRC-checked in pure Python without
  TensorFlow) plus decoding the records that hold the tag;
* ``ScalarTail.poll()`` reading the file the first time (with and without CRC checks);
* an incremental ``poll()`` after appending ``--append`` records, then 10 records (about what
  a running script adds between two polls), and a no-op ``poll()``;

and checks that all of them read the same points of the tag (TensorBoard's readers check every
CRC, so this also checks the CRCs the benchmark wrote with nbtune's numpy CRC-32C). With
``--sampling`` it also counts the points a default ``EventAccumulator`` drops.

Usage::

    python benchmarks/metrics_read.py [--records 600000] [--tags 10] [--append 1000] [--sampling]

(with nbtune installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repository root).
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

from nbtune._metrics import ScalarTail, _masked_crc32c_many, _tag_pattern

METRIC = "charts/episodic_return"
OTHER_TAGS = (
    "charts/episodic_length",
    "charts/learning_rate",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "charts/SPS",
)

T = TypeVar("T")


def frame_records(payloads: list[bytes]) -> bytes:
    """TFRecord-frame serialized events (the CRCs computed with numpy, to write fast)."""
    lengths = np.array([len(p) for p in payloads], dtype=np.int64)
    blob = b"".join(payloads)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    data_crc = _masked_crc32c_many(np.frombuffer(blob, dtype=np.uint8), offsets, lengths)
    length_bytes = lengths.astype("<u8").tobytes()
    header_crc = _masked_crc32c_many(
        np.frombuffer(length_bytes, dtype=np.uint8),
        np.arange(len(payloads), dtype=np.int64) * 8,
        np.full(len(payloads), 8, dtype=np.int64),
    )
    pack = struct.Struct("<I").pack
    parts = []
    for i, payload in enumerate(payloads):
        parts += (length_bytes[8 * i : 8 * i + 8], pack(header_crc[i]), payload, pack(data_crc[i]))
    return b"".join(parts)


def synthetic_events(
    first: int, count: int, tags: list[str], rng: np.random.Generator, *, header: bool
) -> tuple[bytes, dict[str, np.ndarray]]:
    """Records ``first .. first+count-1`` of the run, and the points of METRIC among them."""
    events = {tag: event_pb2.Event() for tag in tags}
    values = {tag: events[tag].summary.value.add(tag=tag) for tag in tags}
    scalars = rng.normal(size=count).astype(np.float32).astype(np.float64).tolist()
    payloads = []
    if header:
        payloads.append(
            event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()
        )
    steps, metric_values, walls = [], [], []
    for i in range(first, first + count):
        tag = tags[i % len(tags)]
        event = events[tag]
        event.step = (i // len(tags)) * 512
        event.wall_time = 1.7e9 + i * 1e-3
        values[tag].simple_value = scalars[i - first]
        payloads.append(event.SerializeToString())
        if tag == METRIC:
            steps.append(event.step)
            metric_values.append(scalars[i - first])
            walls.append(event.wall_time)
    expected = {
        "steps": np.array(steps, dtype=np.int64),
        "values": np.array(metric_values, dtype=np.float64),
        "wall_times": np.array(walls, dtype=np.float64),
    }
    return frame_records(payloads), expected


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def read_accumulator(logdir: Path) -> dict[str, np.ndarray]:
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    points = accumulator.Scalars(METRIC)
    return {
        "steps": np.array([p.step for p in points], dtype=np.int64),
        "values": np.array([p.value for p in points], dtype=np.float64),
        "wall_times": np.array([p.wall_time for p in points], dtype=np.float64),
    }


def read_raw(path: Path) -> dict[str, np.ndarray]:
    pattern = _tag_pattern(METRIC)
    steps, values, walls = [], [], []
    for raw in RawEventFileLoader(str(path)).Load():
        if pattern in raw:
            event = event_pb2.Event.FromString(raw)
            for value in event.summary.value:
                if value.tag == METRIC:
                    steps.append(event.step)
                    values.append(value.simple_value)
                    walls.append(event.wall_time)
    return {
        "steps": np.array(steps, dtype=np.int64),
        "values": np.array(values, dtype=np.float64),
        "wall_times": np.array(walls, dtype=np.float64),
    }


def same(name: str, got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for column in ("steps", "values", "wall_times"):
        if not np.array_equal(got[column], expected[column]):
            raise SystemExit(f"MISMATCH: {name} read different {column}")


def of_tail(tail: ScalarTail) -> dict[str, np.ndarray]:
    return {"steps": tail.steps, "values": tail.values, "wall_times": tail.wall_times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--tags", type=int, default=10, help="scalar tags, the metric included")
    parser.add_argument("--append", type=int, default=1000)
    parser.add_argument("--noop-polls", type=int, default=2000)
    parser.add_argument("--skip-tensorboard", action="store_true", help="time only ScalarTail")
    parser.add_argument(
        "--sampling",
        action="store_true",
        help="also load with the default EventAccumulator and count the points it dropped",
    )
    args = parser.parse_args()
    tags = [METRIC, *OTHER_TAGS][: args.tags]
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "runs" / "CartPole-v1__ppo__1__1700000000"
        logdir.mkdir(parents=True)
        path = logdir / "events.out.tfevents.1700000000.host.1234.0"
        write_s, (blob, expected) = timed(
            lambda: synthetic_events(0, args.records, tags, rng, header=True)
        )
        path.write_bytes(blob)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"synthetic run: {args.records:,} records, {len(tags)} tags, "
            f"{len(expected['steps']):,} points of {METRIC!r}, "
            f"{os.path.getsize(path) / 1e6:.1f} MB (written in {write_s:.1f} s)"
        )
        rows: list[tuple[str, float]] = []
        if not args.skip_tensorboard:
            seconds, got = timed(lambda: read_accumulator(logdir))
            same("EventAccumulator", got, expected)
            rows.append(('EventAccumulator(size_guidance={"scalars": 0})', seconds))
            seconds, got = timed(lambda: read_raw(path))
            same("RawEventFileLoader", got, expected)
            rows.append(("RawEventFileLoader + decode tag records", seconds))
        sampled = None
        if args.sampling:
            accumulator = EventAccumulator(str(logdir))
            accumulator.Reload()
            kept = {point.step for point in accumulator.Scalars(METRIC)}
            last = expected["steps"][-1000:].tolist()
            sampled = (len(kept), len(expected["steps"]), sum(step not in kept for step in last))
        unchecked = ScalarTail(Path(tmp), METRIC, verify_crc=False)
        seconds, count = timed(unchecked.poll)
        same("ScalarTail(verify_crc=False)", of_tail(unchecked), expected)
        rows.append(("ScalarTail.poll() first read, verify_crc=False", seconds))
        tail = ScalarTail(Path(tmp), METRIC)
        seconds, count = timed(tail.poll)
        same("ScalarTail", of_tail(tail), expected)
        assert count == len(expected["steps"])
        first_read = seconds
        rows.append(("ScalarTail.poll() first read", seconds))

        written = args.records
        for appended in (args.append, 10):  # a burst, then what half a second of a run adds
            more, expected_more = synthetic_events(written, appended, tags, rng, header=False)
            written += appended
            with path.open("ab") as file:
                file.write(more)
            seconds, count = timed(tail.poll)
            assert count == len(expected_more["steps"]), (count, len(expected_more["steps"]))
            expected = {k: np.concatenate([expected[k], expected_more[k]]) for k in expected}
            same("ScalarTail after append", of_tail(tail), expected)
            rows.append((f"ScalarTail.poll() after appending {appended} records", seconds))

        start = time.perf_counter()
        for _ in range(args.noop_polls):
            assert tail.poll() == 0
        rows.append(
            ("ScalarTail.poll() with nothing new", (time.perf_counter() - start) / args.noop_polls)
        )

    width = max(len(name) for name, _ in rows)
    print(f"{'reader':<{width}}  {'time':>11}  {'/ ScalarTail first read':>23}")
    for name, seconds in rows:
        shown = f"{seconds * 1e3:8.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:8.1f} us"
        print(f"{name:<{width}}  {shown:>11}  {seconds / first_read:22.3g}x")
    print("all readers read the same steps, values and wall times: OK")
    if sampled is not None:  # before the appends
        print(
            f"default EventAccumulator (10,000-scalar reservoir) kept {sampled[0]:,} of "
            f"{sampled[1]:,} points; of the last 1000 points it lacks {sampled[2]}"
        )


if __name__ == "__main__":
    main()
