#!/usr/bin/env python3
"""Consumer groups with real clients against a rill broker.

Usage: groups_check.py BOOTSTRAP SCENARIO [ARGS...]
  commit TOPIC GROUP     produce 100 records over 3 partitions, consume 60 in GROUP (subscribe),
                         commit exactly the consumed positions synchronously, print them as
                         `COMMITTED p:offset ...` and exit.
  resume TOPIC GROUP     a new member of GROUP: the first record it gets from each partition must
                         be at the committed offset, and it must read exactly the 40 remaining.
  kafka_python TOPIC GROUP  kafka-python group consumer: reads everything, commits, and the
                         committed offsets equal the log end.
Exits 0 and prints OK on success; any failed check raises. Every wait is bounded.
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 40.0


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(TIMEOUT)


def produce(bootstrap, topic, count, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failures = []
    for i in range(count):
        p.produce(topic, value=f"record-{i}".encode(), partition=i % partitions,
                  on_delivery=lambda err, msg: failures.append(err) if err else None)
    check(p.flush(TIMEOUT) == 0, "produce did not finish")
    check(not failures, f"delivery failures: {failures[:3]}")


def group_consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })


def scenario_commit(bootstrap, topic, group):
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 100, 3)
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    positions = {}
    consumed = 0
    deadline = time.time() + TIMEOUT
    while consumed < 60 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        consumed += 1
        positions[m.partition()] = m.offset() + 1
    check(consumed == 60, f"consumed only {consumed} of 60")
    offsets = [TopicPartition(topic, p, o) for p, o in sorted(positions.items())]
    c.commit(offsets=offsets, asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=TIMEOUT)
    by_partition = {tp.partition: tp.offset for tp in committed}
    for p, o in positions.items():
        check(by_partition[p] == o, f"committed {by_partition[p]} != consumed position {o} on {p}")
    # Leave without committing anything else: the broker is SIGKILLed next.
    c.close()
    print("COMMITTED " + " ".join(f"{p}:{o}" for p, o in sorted(positions.items())))
    print("OK")


def scenario_resume(bootstrap, topic, group, committed_spec):
    committed = {int(p): int(o) for p, o in (kv.split(":") for kv in committed_spec.split(","))}
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    first = {}
    count = 0
    deadline = time.time() + TIMEOUT
    while count < 40 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        count += 1
        first.setdefault(m.partition(), m.offset())
    # Anything more would be a duplicate of what the first member consumed.
    extra = c.poll(2.0)
    if extra is not None and not extra.error():
        raise AssertionError(f"read past the 40 remaining records: {extra.partition()}:{extra.offset()}")
    c.close()
    check(count == 40, f"resumed member read {count} records, expected 40")
    for p, o in committed.items():
        if p in first:
            check(first[p] == o, f"partition {p}: resumed at {first[p]}, committed {o}")
    print(f"first offsets {first}")
    print("OK")


def scenario_kafka_python(bootstrap, topic, group):
    from kafka import KafkaConsumer, TopicPartition as KTP

    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 50, 2)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15000, session_timeout_ms=6000,
                             heartbeat_interval_ms=500)
    seen = set()
    for msg in consumer:
        seen.add((msg.partition, msg.offset))
        if len(seen) == 50:
            break
    check(len(seen) == 50, f"kafka-python group consumer read {len(seen)} of 50")
    consumer.commit()
    for p in range(2):
        check(consumer.committed(KTP(topic, p)) == 25, f"partition {p} committed {consumer.committed(KTP(topic, p))}")
    consumer.close()
    print("OK")


SCENARIOS = {
    "commit": scenario_commit,
    "resume": scenario_resume,
    "kafka_python": scenario_kafka_python,
}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP {{{'|'.join(SCENARIOS)}}} ARGS...")
    SCENARIOS[sys.argv[2]](sys.argv[1], *sys.argv[3:])


if __name__ == "__main__":
    main()
