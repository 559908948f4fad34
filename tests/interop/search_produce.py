#!/usr/bin/env python3
"""Produce records with explicit partitions, timestamps, headers and codecs (for tests/search_cli.rs).

Usage: search_produce.py BOOTSTRAP TOPIC SPEC.jsonl
Each SPEC line: {"p": 0, "ts": 1714564800123, "codec": "zstd", "key": "web1:/a.log" | null,
"value": "...", "headers": {"host": "web1"}}. One producer per codec (compression is a
producer setting); records keep the file's order per partition. Exits non-zero on any failed
delivery. Every wait is bounded.
"""

import json
import sys

from confluent_kafka import Producer

bootstrap, topic, spec = sys.argv[1], sys.argv[2], sys.argv[3]
producers = {}
failures = []


def delivered(err, _msg):
    if err is not None:
        failures.append(str(err))


with open(spec, encoding="utf-8") as f:
    for raw in f:
        rec = json.loads(raw)
        codec = rec["codec"]
        if codec not in producers:
            producers[codec] = Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "compression.type": codec,
                    "linger.ms": 50,
                    "enable.idempotence": False,
                    "max.in.flight.requests.per.connection": 1,
                }
            )
        p = producers[codec]
        key = rec.get("key")
        p.produce(
            topic,
            value=rec["value"].encode("utf-8"),
            key=key.encode("utf-8") if key is not None else None,
            partition=rec["p"],
            timestamp=rec["ts"],
            headers=[(k, v.encode("utf-8")) for k, v in rec.get("headers", {}).items()],
            on_delivery=delivered,
        )
        # Keep per-partition order across producers: flush when switching codec.
        p.poll(0)
        if rec.get("flush"):
            p.flush(30)

for p in producers.values():
    left = p.flush(30)
    if left:
        failures.append(f"{left} records not delivered within 30 s")
if failures:
    sys.exit("delivery failed: " + "; ".join(failures[:5]))
print("produced", flush=True)
