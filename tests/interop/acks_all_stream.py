"""Produce with acks=all and idempotence, without end, and record every acknowledged record.

usage: acks_all_stream.py BROKER TOPIC ACKED_FILE PREFIX

Each delivery report without an error appends "partition offset value" to ACKED_FILE, line
buffered, so a record is in the file (the OS has it) as soon as the client saw its
acknowledgement. The test SIGKILLs the broker at a random moment, then this process, and
checks that every line of ACKED_FILE is stored at its offset after the broker restarts.
"""

import sys

from confluent_kafka import KafkaException, Producer


def main():
    broker, topic, acked_path, prefix = sys.argv[1:5]
    producer = Producer(
        {
            "bootstrap.servers": broker,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 200,
            # The broker is killed under it: retry quietly, never give up on our own.
            "message.timeout.ms": 300000,
            "log_level": 0,
        }
    )
    acked = open(acked_path, "a", buffering=1)

    def delivered(err, msg):
        if err is None:
            acked.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")

    i = 0
    while True:
        value = f"{prefix}-{i}"
        try:
            producer.produce(topic, value=value.encode(), key=str(i % 17).encode(), on_delivery=delivered)
        except BufferError:
            producer.poll(0.05)
            continue
        except KafkaException as e:
            print(f"produce: {e}", file=sys.stderr)
            producer.poll(0.05)
            continue
        i += 1
        producer.poll(0)


if __name__ == "__main__":
    main()
