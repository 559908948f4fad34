#!/usr/bin/env python3
"""confluent-kafka (librdkafka 2.x) against a rill broker.

Usage: confluent_check.py BOOTSTRAP SCENARIO
Scenarios: codecs, acks, keyed, timestamps, admin. Exits 0 on success; any failed check
raises (non-zero exit with a traceback). Every wait is bounded.

Consumers never depend on consumer groups: they assign partitions explicitly
with explicit start offsets and never subscribe or commit. (librdkafka requires a group.id to
create a consumer; with assign() only, it never joins the group.)
"""

import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

TIMEOUT = 30.0


def log(*args):
    print(*args, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
    }
    conf.update(extra)
    return Producer(conf)


def consumer(bootstrap):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "rill-tests-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
        }
    )


def produce_all(p, topic, records, partition=None):
    """records: list of (key, value, headers, timestamp_ms or None). Returns delivery reports."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg))

    for key, value, headers, ts in records:
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = headers
        if ts is not None:
            kwargs["timestamp"] = ts
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)
    left = p.flush(TIMEOUT)
    check(left == 0, f"{left} messages still undelivered after {TIMEOUT}s")
    errors = [(err, m.key()) for err, m in reports if err is not None]
    check(not errors, f"delivery errors: {errors[:5]}")
    check(len(reports) == len(records), f"{len(reports)} reports for {len(records)} records")
    return [m for _, m in reports]


def read_partitions(bootstrap, topic, partitions, expected_total):
    """Reads the partitions from the beginning until expected_total messages arrive."""
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got = []
    deadline = time.time() + TIMEOUT
    try:
        while len(got) < expected_total:
            check(
                time.time() < deadline,
                f"read {len(got)}/{expected_total} messages of {topic} in {TIMEOUT}s",
            )
            msg = c.poll(0.5)
            if msg is None:
                continue
            check(msg.error() is None, f"consumer error: {msg.error()}")
            got.append(msg)
        # Nothing more than expected shows up.
        extra = c.poll(1.0)
        check(extra is None, f"unexpected extra message at offset {extra and extra.offset()}")
    finally:
        c.close()
    return got


def scenario_codecs(bootstrap):
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = f"cf-codec-{codec}"
        p = producer(bootstrap, **{"compression.type": codec, "batch.num.messages": 100})
        records = [
            (
                f"key-{i % 5}".encode(),
                (f"value {i} " + "compressible text " * (i % 10)).encode(),
                [("idx", str(i).encode()), ("codec", codec.encode())],
                None,
            )
            for i in range(500)
        ]
        reports = produce_all(p, topic, records, partition=0)
        offsets = [m.offset() for m in reports]
        check(sorted(offsets) == list(range(500)), f"{codec}: acknowledged offsets {offsets[:10]}...")
        got = read_partitions(bootstrap, topic, [0], 500)
        for i, msg in enumerate(got):
            key, value, headers, _ = records[i]
            check(msg.offset() == i, f"{codec}: offset {msg.offset()} at position {i}")
            check(msg.key() == key, f"{codec}: key {msg.key()!r} != {key!r} at {i}")
            check(msg.value() == value, f"{codec}: value mismatch at {i}")
            check(msg.headers() == headers, f"{codec}: headers {msg.headers()} != {headers} at {i}")
        c = consumer(bootstrap)
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.close()
        check((lo, hi) == (0, 500), f"{codec}: watermarks {(lo, hi)}")
        log(f"codec {codec}: 500 records round-tripped")


def scenario_acks(bootstrap):
    for acks in ["0", "1", "all"]:
        topic = f"cf-acks-{acks}"
        extra = {"acks": acks}
        if acks != "all":
            extra["enable.idempotence"] = False  # idempotence requires acks=all
        p = producer(bootstrap, **extra)
        records = [(None, f"acks {acks} #{i}".encode(), None, None) for i in range(300)]
        produce_all(p, topic, records, partition=0)
        got = read_partitions(bootstrap, topic, [0], 300)
        values = [m.value() for m in got]
        check(values == [r[1] for r in records], f"acks={acks}: values differ")
        log(f"acks={acks}: 300 records round-tripped")


def scenario_keyed(bootstrap):
    topic = "cf-keyed"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    futures[topic].result(timeout=TIMEOUT)
    md = admin.list_topics(topic=topic, timeout=TIMEOUT)
    check(len(md.topics[topic].partitions) == 3, f"partitions: {md.topics[topic].partitions}")

    keys = [f"host-{k}:source".encode() for k in range(12)]
    records = []
    seq = {k: 0 for k in keys}
    for i in range(1200):
        k = keys[(i * 7) % len(keys)]
        records.append((k, f"{k.decode()}|{seq[k]}".encode(), None, None))
        seq[k] += 1
    reports = produce_all(producer(bootstrap), topic, records)
    key_partition = {}
    for m in reports:
        prev = key_partition.setdefault(m.key(), m.partition())
        check(prev == m.partition(), f"key {m.key()} went to partitions {prev} and {m.partition()}")
    used = set(key_partition.values())
    check(len(used) >= 2, f"12 keys all hashed to partitions {used}")

    got = read_partitions(bootstrap, topic, [0, 1, 2], len(records))
    per_key = {}
    for msg in got:
        check(
            key_partition[msg.key()] == msg.partition(),
            f"key {msg.key()} read from partition {msg.partition()}",
        )
        k, n = msg.value().decode().rsplit("|", 1)
        check(k.encode() == msg.key(), f"value {msg.value()} under key {msg.key()}")
        per_key.setdefault(msg.key(), []).append(int(n))
    for k in keys:
        check(per_key.get(k) == list(range(seq[k])), f"order of key {k}: {per_key.get(k)}")

    c = consumer(bootstrap)
    total = 0
    for part in range(3):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        expected = sum(1 for m in reports if m.partition() == part)
        check((lo, hi) == (0, expected), f"partition {part} watermarks {(lo, hi)} != (0, {expected})")
        total += hi
    c.close()
    check(total == 1200, f"total {total}")
    log(f"keyed: 1200 records over partitions {sorted(used)}, per-key order preserved")


def scenario_timestamps(bootstrap):
    topic = "cf-timestamps"
    base = int(time.time() * 1000) - 60_000  # recent: retention by time never applies
    p = producer(bootstrap)
    # 100 records, ts = base + 100*i, sent in batches of 10 (a flush after each) so lookups hit
    # both batch boundaries and records inside a batch.
    for start in range(0, 100, 10):
        records = [(None, f"ts #{i}".encode(), None, base + 100 * i) for i in range(start, start + 10)]
        produce_all(p, topic, records, partition=0)

    c = consumer(bootstrap)
    cases = [
        (base - 5000, 0),
        (base, 0),
        (base + 1, 1),
        (base + 50, 1),
        (base + 100, 1),
        (base + 950, 10),
        (base + 1000, 10),
        (base + 2550, 26),
        (base + 9900, 99),
        (base + 9901, -1),
        (base + 1_000_000, -1),
    ]
    for ts, want in cases:
        res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        check(res[0].error is None, f"offsets_for_times({ts - base:+}) error {res[0].error}")
        check(
            res[0].offset == want,
            f"offsets_for_times(base{ts - base:+}) = {res[0].offset}, expected {want}",
        )
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    check((lo, hi) == (0, 100), f"watermarks {(lo, hi)}")
    # The stored timestamps come back on fetch.
    c.assign([TopicPartition(topic, 0, 26)])
    msg = None
    deadline = time.time() + TIMEOUT
    while msg is None and time.time() < deadline:
        msg = c.poll(0.5)
    check(msg is not None and msg.error() is None, f"fetch at offset 26: {msg and msg.error()}")
    check(msg.offset() == 26, f"fetch at 26 returned offset {msg.offset()}")
    check(msg.timestamp()[1] == base + 2600, f"timestamp {msg.timestamp()} != {base + 2600}")
    c.close()
    log("timestamps: offsets_for_times and watermarks correct")


def admin_error_code(future):
    try:
        future.result(timeout=TIMEOUT)
    except KafkaException as e:
        return e.args[0].code()
    return None


def scenario_admin(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic("cf-admin-a", num_partitions=2, replication_factor=1),
            NewTopic("cf-admin-b", num_partitions=1, replication_factor=1, config={"retention.ms": "3600000"}),
        ]
    )
    for name, f in futures.items():
        f.result(timeout=TIMEOUT)
    md = admin.list_topics(timeout=TIMEOUT)
    check("cf-admin-a" in md.topics and "cf-admin-b" in md.topics, f"topics {list(md.topics)}")
    check(len(md.topics["cf-admin-a"].partitions) == 2, "cf-admin-a partitions")
    check(len(md.brokers) == 1, f"brokers {md.brokers}")

    # Creating an existing topic fails with TOPIC_ALREADY_EXISTS.
    code = admin_error_code(admin.create_topics([NewTopic("cf-admin-a", 2, 1)])["cf-admin-a"])
    check(code == KafkaError.TOPIC_ALREADY_EXISTS, f"create existing: {code}")
    # Invalid names fail with INVALID_TOPIC_EXCEPTION (17).
    for bad in ["bad name", "..", "x" * 250]:
        code = admin_error_code(admin.create_topics([NewTopic(bad, 1, 1)])[bad])
        check(code == KafkaError.TOPIC_EXCEPTION, f"create {bad[:20]!r}: {code}")

    # DescribeConfigs shows the per-topic override.
    res = ConfigResource(ConfigResource.Type.TOPIC, "cf-admin-b")
    configs = admin.describe_configs([res])[res].result(timeout=TIMEOUT)
    check("retention.ms" in configs, f"configs {sorted(configs)}")
    check(configs["retention.ms"].value == "3600000", f"retention.ms = {configs['retention.ms'].value}")

    # Delete, then it is gone; deleting again fails with UNKNOWN_TOPIC_OR_PART.
    admin.delete_topics(["cf-admin-a"], operation_timeout=10)["cf-admin-a"].result(timeout=TIMEOUT)
    md = admin.list_topics(timeout=TIMEOUT)
    check("cf-admin-a" not in md.topics, f"deleted topic still listed: {list(md.topics)}")
    check("cf-admin-b" in md.topics, "the other topic survived")
    code = admin_error_code(admin.delete_topics(["cf-admin-a"])["cf-admin-a"])
    check(code == KafkaError.UNKNOWN_TOPIC_OR_PART, f"delete missing: {code}")

    # A deleted topic can be created again and starts empty.
    admin.create_topics([NewTopic("cf-admin-a", 1, 1)])["cf-admin-a"].result(timeout=TIMEOUT)
    c = consumer(bootstrap)
    lo, hi = c.get_watermark_offsets(TopicPartition("cf-admin-a", 0), timeout=10)
    c.close()
    check((lo, hi) == (0, 0), f"recreated topic watermarks {(lo, hi)}")
    log("admin: create/list/describe-configs/delete and errors correct")


SCENARIOS = {
    "codecs": scenario_codecs,
    "acks": scenario_acks,
    "keyed": scenario_keyed,
    "timestamps": scenario_timestamps,
    "admin": scenario_admin,
}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP {{{'|'.join(SCENARIOS)}}}")
    import confluent_kafka

    log("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion())
    SCENARIOS[sys.argv[2]](sys.argv[1])
    log("OK")


if __name__ == "__main__":
    main()
