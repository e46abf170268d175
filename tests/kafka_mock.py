"""librdkafka's mock Kafka cluster as a child process, driven by commands on stdin.

    python -m tests.kafka_mock <brokers> <topic>:<partitions> ...

The mock cluster lives inside librdkafka (shipped in the confluent-kafka wheel, whose
Python API does not expose it); this program reaches its C functions with ctypes. It
prints ``bootstrap <host:port,...>`` once the brokers listen, then answers each command
line with ``ok`` (or ``error <text>``):

    down <broker id>                  the broker stops answering (connections closed)
    up <broker id>                    and comes back
    rtt <broker id> <ms>              every response of the broker is delayed
    leader <topic> <partition> <id>   move a partition's leader
    errors <api key> <code> ...       the next requests of that API fail with these codes
    clear <api key>                   drop the pending injected errors of that API
    topic <name> <partitions>         create a topic

It exits when stdin closes (or on SIGTERM/SIGKILL from the test, by PID).

The shared library's file name carries a hash: the confluent-kafka version is pinned in
pyproject.toml and the file is found by pattern in the wheel's ``confluent_kafka.libs``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

import confluent_kafka

RD_KAFKA_PRODUCER = 0


def _library() -> ctypes.CDLL:
    package = os.path.dirname(confluent_kafka.__file__)
    found = sorted(glob.glob(os.path.join(package, os.pardir, "confluent_kafka.libs", "librdkafka*.so*")))
    if not found:
        raise SystemExit(f"no librdkafka shared library next to {package}")
    lib = ctypes.CDLL(found[0])
    vp, cp, i, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int32
    signatures = {
        "rd_kafka_conf_new": ([], vp),
        "rd_kafka_conf_set": ([vp, cp, cp, cp, ctypes.c_size_t], i),
        "rd_kafka_new": ([i, vp, cp, ctypes.c_size_t], vp),
        "rd_kafka_mock_cluster_new": ([vp, i], vp),
        "rd_kafka_mock_cluster_bootstraps": ([vp], cp),
        "rd_kafka_mock_topic_create": ([vp, cp, i, i], i),
        "rd_kafka_mock_broker_set_down": ([vp, i32], i),
        "rd_kafka_mock_broker_set_up": ([vp, i32], i),
        "rd_kafka_mock_broker_set_rtt": ([vp, i32, i], i),
        "rd_kafka_mock_partition_set_leader": ([vp, cp, i32, i32], i),
        "rd_kafka_mock_push_request_errors_array": ([vp, i32, ctypes.c_size_t, ctypes.POINTER(i)], None),
        "rd_kafka_mock_clear_request_errors": ([vp, i32], None),
        "rd_kafka_err2str": ([i], cp),
    }
    for name, (args, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = args, result
    return lib


class MockCluster:
    def __init__(self, brokers: int) -> None:
        self.lib = _library()
        conf = self.lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        # The owning handle must not try to reach a real cluster.
        self.lib.rd_kafka_conf_set(conf, b"bootstrap.servers", b"", errstr, 512)
        self.lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
        self.handle = self.lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, 512)
        if not self.handle:
            raise SystemExit(f"rd_kafka_new failed: {errstr.value.decode()}")
        self.cluster = self.lib.rd_kafka_mock_cluster_new(self.handle, brokers)
        if not self.cluster:
            raise SystemExit("rd_kafka_mock_cluster_new failed")

    @property
    def bootstrap(self) -> str:
        return self.lib.rd_kafka_mock_cluster_bootstraps(self.cluster).decode()

    def _check(self, code: int) -> None:
        if code:
            raise RuntimeError(self.lib.rd_kafka_err2str(code).decode())

    def command(self, words: list[str]) -> None:
        verb, args = words[0], words[1:]
        lib, mc = self.lib, self.cluster
        if verb == "down":
            self._check(lib.rd_kafka_mock_broker_set_down(mc, int(args[0])))
        elif verb == "up":
            self._check(lib.rd_kafka_mock_broker_set_up(mc, int(args[0])))
        elif verb == "rtt":
            self._check(lib.rd_kafka_mock_broker_set_rtt(mc, int(args[0]), int(args[1])))
        elif verb == "leader":
            topic, partition, broker = args[0].encode(), int(args[1]), int(args[2])
            self._check(lib.rd_kafka_mock_partition_set_leader(mc, topic, partition, broker))
        elif verb == "errors":
            codes = [int(a) for a in args[1:]]
            array = (ctypes.c_int * len(codes))(*codes)
            lib.rd_kafka_mock_push_request_errors_array(mc, int(args[0]), len(codes), array)
        elif verb == "clear":
            lib.rd_kafka_mock_clear_request_errors(mc, int(args[0]))
        elif verb == "topic":
            self._check(lib.rd_kafka_mock_topic_create(mc, args[0].encode(), int(args[1]), 1))
        else:
            raise ValueError(f"unknown command {verb!r}")


def main() -> None:
    cluster = MockCluster(int(sys.argv[1]))
    for spec in sys.argv[2:]:
        name, partitions = spec.rsplit(":", 1)
        cluster.command(["topic", name, partitions])
    print(f"bootstrap {cluster.bootstrap}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            cluster.command(words)
        except Exception as exc:  # report and keep serving: the test decides what it means
            print(f"error {exc}", flush=True)
        else:
            print("ok", flush=True)
    # The process ends here; the cluster's threads end with it.
    os._exit(0)


if __name__ == "__main__":
    main()
