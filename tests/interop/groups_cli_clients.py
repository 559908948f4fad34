#!/usr/bin/env python3
"""confluent-kafka helpers for tests/groups_cli.rs (`rill groups`).

Usage:
  groups_cli_clients.py consume BOOTSTRAP TOPIC GROUP COUNT
      Joins GROUP subscribed to TOPIC, consumes exactly COUNT records, commits them
      synchronously, leaves, and prints {"committed": {"PARTITION": OFFSET, ...}} as JSON.
  groups_cli_clients.py commit BOOTSTRAP GROUP TOPIC PARTITION OFFSET
      Commits OFFSET for one partition without joining (assign-only consumers commit with
      generation -1, as Kafka allows for a group without members).
  groups_cli_clients.py produce-old BOOTSTRAP TOPIC PARTITION AGE_MS
      Produces one record whose timestamp is AGE_MS in the past.

Exits 0 on success; a failed check raises. Every wait is bounded.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

TIMEOUT = 30.0


def consume(bootstrap, topic, group, count):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "groups-test-consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([topic])
    got = 0
    deadline = time.time() + TIMEOUT
    while got < count:
        if time.time() > deadline:
            raise AssertionError(f"consumed {got} of {count} records within {TIMEOUT}s")
        msgs = c.consume(num_messages=count - got, timeout=1.0)
        for m in msgs:
            if m.error():
                raise KafkaException(m.error())
        got += len(msgs)
    # commit() without arguments commits the positions of what was returned: exactly COUNT.
    committed = c.commit(asynchronous=False)
    for tp in committed:
        if tp.error:
            raise KafkaException(tp.error)
    print(json.dumps({"committed": {str(tp.partition): tp.offset for tp in committed}}), flush=True)
    c.close()


def commit(bootstrap, group, topic, partition, offset):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    result = c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    for tp in result:
        if tp.error:
            raise KafkaException(tp.error)
    c.close()


def produce_old(bootstrap, topic, partition, age_ms):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors = []
    ts = int(time.time() * 1000) - age_ms
    p.produce(
        topic,
        value=b"old record",
        partition=partition,
        timestamp=ts,
        on_delivery=lambda err, msg: errors.append(err) if err else None,
    )
    left = p.flush(TIMEOUT)
    if left or errors:
        raise AssertionError(f"produce failed: {left} undelivered, errors {errors}")


def main():
    mode = sys.argv[1]
    args = sys.argv[2:]
    if mode == "consume":
        consume(args[0], args[1], args[2], int(args[3]))
    elif mode == "commit":
        commit(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif mode == "produce-old":
        produce_old(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
