#!/usr/bin/env python3
"""kafka-python 3 (pure Python client) against a rill broker.

Usage: kafka_python_check.py BOOTSTRAP SCENARIO
Scenarios: produce_default, produce_acks_all_gzip, admin. Exits 0 on success; a failed check
raises (non-zero exit with a traceback). Every wait is bounded.

Codecs: kafka-python 3.0.12 implements gzip with the standard library only; snappy needs
python-snappy or cramjam, lz4 needs the lz4 package and zstd needs zstandard, none of which are
in the test venv (tests/run-all.sh installs exactly confluent-kafka and kafka-python). So only
gzip (and none) are exercised here; confluent_check.py covers all five codecs.

Consumers use group_id=None with assign() + seek_to_beginning(), so these checks never depend on
consumer groups.
"""

import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import InvalidTopicError, TopicAlreadyExistsError

TIMEOUT = 30.0


def log(*args):
    print(*args, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def produce(bootstrap, topic, records, **config):
    p = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=20000, **config)
    futures = [p.send(topic, key=k, value=v, partition=0) for k, v in records]
    p.flush(timeout=TIMEOUT)
    metas = [f.get(timeout=TIMEOUT) for f in futures]
    p.close(timeout=10)
    offsets = [m.offset for m in metas]
    check(offsets == sorted(offsets), f"acknowledged offsets out of order: {offsets[:10]}")
    return metas


def read_back(bootstrap, topic, partition, expected_total):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=20000,
    )
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < expected_total:
        check(time.time() < deadline, f"read {len(got)}/{expected_total} records in {TIMEOUT}s")
        for records in c.poll(timeout_ms=500).values():
            got.extend(records)
    extra = c.poll(timeout_ms=1000)
    check(not any(extra.values()), f"unexpected extra records: {extra}")
    end = c.end_offsets([tp])[tp]
    check(end == expected_total, f"end offset {end} != {expected_total}")
    c.close()
    return got


def check_round_trip(bootstrap, topic, n, **producer_config):
    records = [
        (f"key-{i % 9}".encode(), (f"kafka-python #{i} " + "abc " * (i % 13)).encode())
        for i in range(n)
    ]
    metas = produce(bootstrap, topic, records, **producer_config)
    check([m.offset for m in metas] == list(range(n)), f"offsets {[m.offset for m in metas][:10]}")
    got = read_back(bootstrap, topic, 0, n)
    for i, rec in enumerate(got):
        check(rec.offset == i, f"offset {rec.offset} at position {i}")
        check((rec.key, rec.value) == records[i], f"record {i}: {(rec.key, rec.value)} != {records[i]}")


def scenario_produce_default(bootstrap):
    # Default settings: kafka-python 3 uses acks=all and enable_idempotence=True by default.
    check_round_trip(bootstrap, "kp-default", 500)
    log("default producer: 500 records round-tripped")


def scenario_produce_acks_all_gzip(bootstrap):
    check_round_trip(bootstrap, "kp-gzip", 500, acks="all", compression_type="gzip")
    check_round_trip(bootstrap, "kp-acks1", 200, acks=1, enable_idempotence=False)
    log("acks=all + gzip and acks=1 producers: records round-tripped")


def scenario_admin(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    admin.create_topics({"kp-admin": {"num_partitions": 3, "replication_factor": 1}})
    check("kp-admin" in admin.list_topics(), f"topics {admin.list_topics()}")
    try:
        admin.create_topics({"kp-admin": {"num_partitions": 3, "replication_factor": 1}})
        raise AssertionError("creating an existing topic succeeded")
    except TopicAlreadyExistsError:
        pass
    try:
        admin.create_topics({"bad name": {"num_partitions": 1, "replication_factor": 1}})
        raise AssertionError("creating 'bad name' succeeded")
    except InvalidTopicError:
        pass
    admin.close()

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    deadline = time.time() + TIMEOUT
    parts = c.partitions_for_topic("kp-admin")
    while parts is None and time.time() < deadline:
        time.sleep(0.1)
        parts = c.partitions_for_topic("kp-admin")
    c.close()
    check(parts == {0, 1, 2}, f"partitions of kp-admin: {parts}")
    log("admin: create_topics, duplicate and invalid-name errors correct")


SCENARIOS = {
    "produce_default": scenario_produce_default,
    "produce_acks_all_gzip": scenario_produce_acks_all_gzip,
    "admin": scenario_admin,
}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP {{{'|'.join(SCENARIOS)}}}")
    log("kafka-python", kafka.__version__)
    SCENARIOS[sys.argv[2]](sys.argv[1])
    log("OK")


if __name__ == "__main__":
    main()
