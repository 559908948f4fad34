#!/usr/bin/env python3
"""confluent-kafka and kafka-python against a rill broker with TLS and SASL.

Usage: security_check.py SCENARIO SETUP_JSON
SETUP_JSON: {"tls": "127.0.0.1:P", "plain": "127.0.0.1:Q" (SASL_PLAINTEXT listener, sasl only),
             "ca": "/path/ca.pem", "passwords": {"admin": ..., "writer": ..., "reader": ...}}
Scenarios:
  ssl   TLS only (no SASL): confluent-kafka produces and consumes over SSL.
  sasl  SASL_SSL + SASL_PLAINTEXT: SCRAM-SHA-256 and PLAIN with confluent-kafka and
        kafka-python, a wrong password refused, a reader refused produce, a writer refused
        DeleteTopics, an admin allowed it.
Exits 0 on success; any failed check raises. Every wait is bounded.
"""

import json
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
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30.0


def log(*args):
    print(*args, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def cf_conf(bootstrap, protocol, ca=None, user=None, password=None, mechanism="SCRAM-SHA-256"):
    conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if ca:
        conf["ssl.ca.location"] = ca
    if user:
        conf.update(
            {"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
        )
    return conf


def cf_produce(conf, topic, values):
    """Produces values; returns the list of delivery errors (None for success)."""
    reports = []
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "message.timeout.ms": 15000})
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=lambda err, msg: reports.append(err))
        p.poll(0)
    left = p.flush(TIMEOUT)
    check(left == 0, f"{left} messages undelivered after {TIMEOUT}s")
    check(len(reports) == len(values), f"{len(reports)} reports for {len(values)} messages")
    return reports


def cf_read(conf, topic, expected):
    c = Consumer({**conf, "group.id": "security-check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + TIMEOUT
    try:
        while len(got) < expected:
            check(time.time() < deadline, f"read {len(got)}/{expected} of {topic}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            check(msg.error() is None, f"consumer error: {msg.error()}")
            got.append(msg.value())
    finally:
        c.close()
    return got


def scenario_ssl(setup):
    conf = cf_conf(setup["tls"], "ssl", ca=setup["ca"])
    values = [f"tls {i}".encode() for i in range(100)]
    errors = [e for e in cf_produce(conf, "tls-cf", values) if e is not None]
    check(not errors, f"delivery errors over TLS: {errors[:3]}")
    got = cf_read(conf, "tls-cf", 100)
    check(got == values, "records read over TLS differ from those written")
    log("confluent-kafka: 100 records produced and consumed over SSL")
    # A client that does not trust the CA is refused by its own TLS check.
    bad = Producer({"bootstrap.servers": setup["tls"], "security.protocol": "ssl",
                    "message.timeout.ms": 3000})
    errs = []
    bad.produce("tls-cf", b"x", on_delivery=lambda err, msg: errs.append(err))
    bad.flush(10)
    check(errs and errs[0] is not None, f"a client without the CA delivered: {errs}")
    log(f"confluent-kafka without the CA: refused ({errs[0].name()})")
    del bad


def kp_client_conf(setup, user, mechanism, bootstrap=None, protocol="SASL_SSL"):
    conf = {
        "bootstrap_servers": bootstrap or setup["tls"],
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": setup["passwords"].get(user, "wrong"),
        "request_timeout_ms": 15000,
    }
    if protocol == "SASL_SSL":
        conf["ssl_cafile"] = setup["ca"]
    return conf


def scenario_sasl(setup):
    ca, pw = setup["ca"], setup["passwords"]
    writer_scram = cf_conf(setup["tls"], "sasl_ssl", ca, "writer", pw["writer"])
    reader_plain = cf_conf(setup["plain"], "sasl_plaintext", None, "reader", pw["reader"], "PLAIN")

    # confluent-kafka: SCRAM-SHA-256 over SASL_SSL writes, PLAIN over SASL_PLAINTEXT reads.
    values = [f"cf {i}".encode() for i in range(100)]
    errors = [e for e in cf_produce(writer_scram, "logs", values) if e is not None]
    check(not errors, f"writer delivery errors: {errors[:3]}")
    got = cf_read(reader_plain, "logs", 100)
    check(got == values, "the reader read other records than the writer wrote")
    log("confluent-kafka: SCRAM-SHA-256 over SASL_SSL wrote 100, PLAIN over SASL_PLAINTEXT read them")

    # A consumer group: the reader joins, reads and commits (group APIs need read permission).
    group = Consumer({**cf_conf(setup["tls"], "sasl_ssl", ca, "reader", pw["reader"]),
                      "group.id": "dash", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
    group.subscribe(["logs"])
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < 100:
        check(time.time() < deadline, f"group consumer read {len(got)}/100")
        msg = group.poll(0.5)
        if msg is None:
            continue
        check(msg.error() is None, f"group consumer error: {msg.error()}")
        got.append(msg)
    group.commit(message=got[-1], asynchronous=False)
    committed = group.committed([TopicPartition("logs", 0)], timeout=10)
    check(committed[0].offset == 100, f"committed offset {committed[0].offset}")
    group.close()
    log("confluent-kafka: the reader's group consumer read 100 and committed offset 100")

    # kafka-python: SCRAM-SHA-256 writes over SASL_SSL, PLAIN reads over SASL_SSL.
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    kp = KafkaProducer(acks="all", **kp_client_conf(setup, "writer", "SCRAM-SHA-256"))
    for i in range(50):
        kp.send("logs", f"kp {i}".encode(), partition=0).get(timeout=TIMEOUT)
    kp.close()
    kc = KafkaConsumer(
        enable_auto_commit=False, consumer_timeout_ms=int(TIMEOUT * 1000),
        **kp_client_conf(setup, "reader", "PLAIN"),
    )
    kc.assign([KTP("logs", 0)])
    kc.seek_to_beginning()
    seen = []
    for msg in kc:
        seen.append(msg.value)
        if len(seen) == 150:
            break
    kc.close()
    check(len(seen) == 150, f"kafka-python read {len(seen)}/150")
    check(seen[100:] == [f"kp {i}".encode() for i in range(50)], "kafka-python read other records")
    log("kafka-python: SCRAM-SHA-256 wrote 50 and PLAIN read all 150 over SASL_SSL")

    # A wrong password is refused with a clear error, for both libraries.
    auth_errors = []
    bad = Producer({**cf_conf(setup["tls"], "sasl_ssl", ca, "writer", "not-the-password"),
                    "message.timeout.ms": 5000, "error_cb": lambda e: auth_errors.append(e)})
    delivered = []
    bad.produce("logs", b"intruder", on_delivery=lambda err, msg: delivered.append(err))
    bad.flush(10)
    check(delivered and delivered[0] is not None, f"a wrong password delivered: {delivered}")
    check(
        any(e.code() == KafkaError._AUTHENTICATION for e in auth_errors),
        f"confluent-kafka did not report an authentication error: {auth_errors}",
    )
    log(f"confluent-kafka, wrong password: {auth_errors[0].str()}")
    del bad  # stop its reconnect attempts
    # kafka-python raises a bootstrap timeout and logs the broker's SASL error as the cause.
    import io
    import logging

    kafka_log = io.StringIO()
    handler = logging.StreamHandler(kafka_log)
    logging.getLogger("kafka").addHandler(handler)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        bad_kp = KafkaProducer(**{**kp_client_conf(setup, "writer", "SCRAM-SHA-256"),
                                  "sasl_plain_password": "not-the-password",
                                  "max_block_ms": 5000})
        bad_kp.send("logs", b"intruder").get(timeout=15)
        raise AssertionError("kafka-python delivered with a wrong password")
    except AssertionError:
        raise
    except Exception as e:  # the library's own error type
        text = f"{type(e).__name__}: {e}\n{kafka_log.getvalue()}"
        check("SaslAuthenticationFailedError" in text and "Authentication failed" in text,
              f"kafka-python does not report the authentication failure: {text[:2000]}")
        log("kafka-python, wrong password: SaslAuthenticationFailedError")
    finally:
        logging.getLogger("kafka").removeHandler(handler)

    # A reader cannot produce: TOPIC_AUTHORIZATION_FAILED.
    reader_scram = cf_conf(setup["tls"], "sasl_ssl", ca, "reader", pw["reader"])
    errors = cf_produce(reader_scram, "logs", [b"not allowed"])
    check(
        errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
        f"a reader's produce got {errors}",
    )
    log(f"confluent-kafka, reader produces: {errors[0].str()}")
    # kafka-python: its default idempotent producer is refused InitProducerId (no write on any
    # topic: CLUSTER_AUTHORIZATION_FAILED, as Kafka answers), a plain one is refused the write.
    for idempotent, expected in [(True, "ClusterAuthorizationFailed"),
                                 (False, "TopicAuthorizationFailed")]:
        kr = KafkaProducer(enable_idempotence=idempotent,
                           **kp_client_conf(setup, "reader", "SCRAM-SHA-256"))
        try:
            kr.send("logs", b"not allowed", partition=0).get(timeout=TIMEOUT)
            raise AssertionError("kafka-python: a reader produced")
        except AssertionError:
            raise
        except Exception as e:
            check(expected in f"{type(e).__name__} {e}", f"expected {expected}, got {e!r}")
            log(f"kafka-python, reader produces (idempotent={idempotent}): {expected}")
        finally:
            kr.close(timeout=5)

    # A writer cannot delete topics; an admin can.
    admin = AdminClient(cf_conf(setup["tls"], "sasl_ssl", ca, "admin", pw["admin"]))
    admin.create_topics([NewTopic("scratch", 1)])["scratch"].result(TIMEOUT)
    writer_admin = AdminClient(writer_scram)
    try:
        writer_admin.delete_topics(["scratch"])["scratch"].result(TIMEOUT)
        raise AssertionError("a writer deleted a topic")
    except KafkaException as e:
        err = e.args[0]
        check(err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"writer delete: {err}")
        log(f"confluent-kafka, writer deletes a topic: {err.str()}")
    admin.delete_topics(["scratch"])["scratch"].result(TIMEOUT)
    log("confluent-kafka: the admin created and deleted a topic")


SCENARIOS = {"ssl": scenario_ssl, "sasl": scenario_sasl}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(SCENARIOS)}}} SETUP_JSON")
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print("OK")


if __name__ == "__main__":
    main()
