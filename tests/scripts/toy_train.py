"""A tiny CleanRL-style training script whose return is a known function of its flags.

It logs ``charts/episodic_return`` to ``runs/{run_name}`` as torch's ``SummaryWriter`` does
(``simple_value`` scalars), without torch. Point ``i`` of ``n`` (``n = total_timesteps // 100``)
is ``score(flags) - 0.01 * (n - 1 - i)``, so the mean of the last ``k`` points is exactly
``score - 0.005 * (k - 1)``. It also writes the argv and environment it received to
``received.json`` in its working directory, so tests can check that every flag arrives.

``score``: quality ``q = exp(-(log10(learning_rate) + 3) ** 2)`` (best at 1e-3), times 0.9
without ``--anneal-lr``, plus ``0.001 * seed``, plus ``--noise`` times a standard normal draw
seeded by (seed, environment, learning rate, anneal-lr): per-seed noise of mean 0, so a
configuration's true mean over seeds is known; the return is ``low + q * (high - low)`` with the
environment's range in ``RANGES`` (``EnvA`` [0, 100], ``EnvB`` [-100, 0], and CleanRL's
CartPole/Acrobot targets), so every environment normalizes to ``q``. It accepts the other flags
of CleanRL's PPO that the examples of CleanRL's tuner documentation tune, and ignores them.

``--log-hparams`` logs the arguments as CleanRL does (a ``hyperparameters`` text summary with a
``|param|value|`` table); ``--ignore-flag NAME`` makes the script drop that flag and use its
default instead, as CleanRL's own tuner made scripts drop their first flag (cleanrl#533).
"""

import argparse
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

# TFRecord framing written by hand: tensorboard's EventFileWriter costs ~1 s to import.
_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class EventFileWriter:
    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
        self._f = open(os.path.join(logdir, name), "wb")
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event: event_pb2.Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._f.write(header + struct.pack("<I", _masked_crc32c(header)))
        self._f.write(data + struct.pack("<I", _masked_crc32c(data)))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


#: Score range per environment: the return is ``low + q * (high - low)``.
RANGES = {
    "EnvA": (0.0, 100.0),
    "EnvB": (-100.0, 0.0),
    "CartPole-v1": (0.0, 500.0),
    "Acrobot-v1": (-500.0, 0.0),
}


def quality(learning_rate: float, anneal_lr: bool, seed: int) -> float:
    q = math.exp(-((math.log10(learning_rate) + 3) ** 2)) * (1.0 if anneal_lr else 0.9)
    return q + 0.001 * seed


def noise_draw(learning_rate: float, anneal_lr: bool, seed: int, env_id: str) -> float:
    """A standard normal draw, the same for the same seed, environment and configuration."""
    return random.Random(f"{seed}/{env_id}/{learning_rate!r}/{anneal_lr}").gauss(0.0, 1.0)


def score(
    learning_rate: float, anneal_lr: bool, seed: int, env_id: str, noise: float = 0.0
) -> float:
    low, high = RANGES.get(env_id, (0.0, 100.0))
    q = quality(learning_rate, anneal_lr, seed)
    if noise:
        q += noise * noise_draw(learning_rate, anneal_lr, seed, env_id)
    return low + q * (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--learning-rate", type=float, default=2.5e-4, help="step size")
    parser.add_argument("--num-minibatches", type=int, default=4, help="minibatches per epoch")
    parser.add_argument(
        "--anneal-lr", action=argparse.BooleanOptionalAction, default=True, help="anneal"
    )
    parser.add_argument("--layers", type=int, nargs="*", default=[64, 64])
    parser.add_argument("--total-timesteps", type=int, default=5000)
    parser.add_argument("--env-id", type=str, default="EnvA")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exp-name", type=str, default="toy")
    for flag, kind in [
        ("--update-epochs", int),
        ("--num-steps", int),
        ("--num-envs", int),
        ("--vf-coef", float),
        ("--max-grad-norm", float),
    ]:
        parser.add_argument(flag, type=kind, default=1)
    parser.add_argument("--mode", choices=["ok", "crash", "nometric", "nan", "hang"], default="ok")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep before logging")
    parser.add_argument("--spawn-child", action="store_true", help="leave a grandchild running")
    parser.add_argument("--log-sleep", type=float, default=0.0, help="seconds between points")
    parser.add_argument(
        "--damage",
        choices=["none", "truncate", "corrupt"],
        default="none",
        help="after logging, cut the event file inside its last record, or corrupt the length "
        "of the record in the middle (and still exit 0)",
    )
    parser.add_argument(
        "--metric-from", type=float, default=0.0, help="first fraction of training without metric"
    )
    parser.add_argument(
        "--noise", type=float, default=0.0, help="sd of per-seed noise (normalized)"
    )
    parser.add_argument("--log-hparams", action="store_true", help="log args as CleanRL does")
    parser.add_argument("--ignore-flag", default="", help="drop this flag: use its default")
    parser.add_argument(
        "--fill-disk", action="store_true", help="write a file until the disk is full (crashes)"
    )
    parser.add_argument(
        "--ignore-sigterm", action="store_true", help="ignore SIGTERM (only SIGKILL ends it)"
    )
    args = parser.parse_args()
    if args.ignore_flag:
        name = args.ignore_flag.replace("-", "_")
        setattr(args, name, parser.get_default(name))
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    with open("received.json", "w") as f:
        json.dump(
            {
                "argv": sys.argv,
                "args": vars(args),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                "TOY_EXTRA": os.environ.get("TOY_EXTRA"),
                "started": time.time(),
                "pid": os.getpid(),
            },
            f,
        )
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open("grandchild.pid", "w") as f:
            f.write(str(child.pid))
    if args.mode == "crash":
        print(
            "Traceback (most recent call last):\nValueError: toy crash on purpose", file=sys.stderr
        )
        return 3
    if args.fill_disk:
        with open("filler.bin", "wb") as f:
            while True:  # until OSError: [Errno 28] No space left on device
                f.write(b"\0" * 65536)
                f.flush()
    if args.sleep:
        time.sleep(args.sleep)
    if args.mode == "hang":
        time.sleep(600)

    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    writer = EventFileWriter(os.path.join("runs", run_name))
    if args.log_hparams:  # as CleanRL: writer.add_text("hyperparameters", table)
        table = "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
        text = summary_pb2.Summary.Value(
            tag="hyperparameters/text_summary",  # torch's add_text appends /text_summary
            metadata=summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
            ),
            tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[table.encode()]),
        )
        writer.add_event(
            event_pb2.Event(
                wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=[text])
            )
        )
    n = args.total_timesteps // 100
    base = score(args.learning_rate, args.anneal_lr, args.seed, args.env_id, args.noise)
    middle = None
    for i in range(n):
        if i == n // 2:
            middle = writer._f.tell()
        step = (i + 1) * 100
        if step < args.metric_from * args.total_timesteps:
            tag, value = "charts/SPS", 1000.0  # like a run whose first episode ends late
        elif args.mode == "nometric":
            tag, value = "losses/value_loss", 1.0
        else:
            tag, value = "charts/episodic_return", base - 0.01 * (n - 1 - i)
            if args.mode == "nan":
                value = float("nan")
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
        )
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        if args.log_sleep:
            writer.flush()
            time.sleep(args.log_sleep)
    writer.close()
    if args.damage != "none":
        path = writer._f.name
        with open(path, "r+b") as f:
            if args.damage == "truncate":
                f.truncate(os.path.getsize(path) - 20)
            else:
                f.seek(middle)
                f.write(b"\xff" * 8)
    print(f"{args.env_id} seed {args.seed}: final return {base:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
