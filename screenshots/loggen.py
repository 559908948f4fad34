"""Appends realistic log lines for the dashboard screenshots (screenshots/make.sh): an app
server on web-1 and PostgreSQL on db-1, ~15 lines/s, with a fixed seed."""
import random
import sys
import time

random.seed(7)
WEB = [
    "INFO GET /api/orders/{n} 200 {ms}ms", "INFO GET /api/cart 200 {ms}ms",
    "INFO POST /api/checkout 201 {ms}ms", "WARN payment provider slow: {s}s (retrying)",
    "ERROR order {n}: card declined", "INFO GET /api/orders/{n} 200 {ms}ms",
    "DEBUG cache hit ratio 0.{ms}", "ERROR upstream timeout after 5000ms (orders-svc)",
]
DB = [
    "LOG:  checkpoint complete: wrote {ms} buffers",
    "LOG:  duration: {ms}.12 ms  statement: SELECT * FROM orders WHERE id = {n}",
    "WARNING:  could not send data to client: Broken pipe",
    "ERROR:  deadlock detected on relation orders",
    "LOG:  automatic vacuum of table \"shop.public.orders\": index scans: 1",
]
files = {
    host: open(f"{sys.argv[1]}/{host}/{name}", "a", buffering=1)
    for host, name in (("web-1", "app.log"), ("db-1", "postgresql.log"))
}
n = 1800
while True:
    n += 1
    host, lines = ("web-1", WEB) if random.random() < 0.7 else ("db-1", DB)
    line = random.choice(lines).format(n=n, ms=random.randint(3, 900), s=round(random.uniform(1, 3), 1))
    files[host].write(line + "\n")
    time.sleep(random.uniform(0.02, 0.12))
