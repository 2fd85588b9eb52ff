#!/usr/bin/env python3
"""Checks deploy/docker-compose.yml as `docker-compose config` resolves it: every service
built from the Tidemark image can be scaled (no host port, no container_name: a second
replica would collide) and has a health check; clients get in through the load balancer,
which publishes the gRPC ports, and Prometheus scrapes every Tidemark service. And the secure
defaults: only nginx publishes ports, on 127.0.0.1 unless told otherwise; no password or key in
any environment (only *_FILE paths to secrets); ingest and query serve TLS and check tokens;
the writer is not the superuser and query/Grafana use the read-only role; Grafana needs a login.
And every Tidemark replica has CPU and memory caps.

usage: compose_scaling_test.py DOCKER_COMPOSE COMPOSE_FILE"""
import os
import re
import subprocess
import sys

import yaml

compose, path = sys.argv[1], sys.argv[2]
resolved = subprocess.run([compose, "-f", path, "config"], check=True, capture_output=True,
                          text=True).stdout
services = yaml.safe_load(resolved)["services"]
problems = []
tidemark = sorted(n for n, s in services.items() if s.get("image") == "tidemark:local")
expected = {"ingest", "aggregator", "timestream-writer", "archive", "query", "simulator"}
if not expected <= set(tidemark):
    problems.append(f"Tidemark services missing from compose: {sorted(expected - set(tidemark))}")
for name in tidemark:
    s = services[name]
    if s.get("ports"):
        problems.append(f"{name}: publishes host ports {s['ports']}; a second replica collides")
    if "container_name" in s:
        problems.append(f"{name}: container_name {s['container_name']!r} prevents --scale")
    hc = s.get("healthcheck")
    if not hc or hc.get("disable") or not hc.get("test") or hc["test"][0] == "NONE":
        problems.append(f"{name}: no health check")

lb = services.get("nginx")
if not lb:
    problems.append("no load balancer (nginx) in front of ingest and query")
else:
    published = {str(p).split(":")[-1].split("/")[0] if not isinstance(p, dict)
                 else str(p.get("target")) for p in lb.get("ports", [])}
    for port in ("50051", "50052"):
        if port not in published:
            problems.append(f"nginx does not publish {port}")
for name, s in services.items():
    if name != "nginx" and s.get("ports"):
        problems.append(f"{name}: publishes {s['ports']}; only ingest and query (nginx) may be")
for p in (lb or {}).get("ports", []):
    host_ip = p.get("host_ip") if isinstance(p, dict) else str(p).split(":")[0]
    if host_ip != "127.0.0.1":
        problems.append(f"nginx publishes {p} beyond loopback by default")
for name, s in services.items():
    env = s.get("environment") or {}
    for key, value in (env.items() if isinstance(env, dict) else []):
        secret_like = any(w in key.upper() for w in ("PASSWORD", "SECRET", "TOKEN"))
        if secret_like and not key.upper().endswith("_FILE") and "/run/secrets/" not in str(value):
            problems.append(f"{name}: {key} holds a secret in the environment")
        if "password=" in str(value).lower():
            problems.append(f"{name}: {key} carries a password inline")
for name in ("ingest", "query"):
    env = services.get(name, {}).get("environment") or {}
    for key in ("TIDEMARK_TLS_CERT_FILE", "TIDEMARK_TLS_KEY_FILE", "TIDEMARK_CREDENTIALS_FILE"):
        if not env.get(key):
            problems.append(f"{name}: {key} is not set (TLS and tokens are on by default)")
    if str(env.get("TIDEMARK_ALLOW_UNAUTHENTICATED", "")).lower() in ("1", "true"):
        problems.append(f"{name}: serves without checking credentials")
writer_dsn = str((services.get("timestream-writer", {}).get("environment") or {}).get(
    "TIDEMARK_PG_DSN", ""))
if "user=tidemark_writer" not in writer_dsn:
    problems.append(f"the writer does not log in as tidemark_writer: {writer_dsn}")
query_dsn = str((services.get("query", {}).get("environment") or {}).get("TIDEMARK_PG_DSN", ""))
if "user=tidemark_query" not in query_dsn:
    problems.append(f"query does not log in as the read-only role: {query_dsn}")
grafana_env = services.get("grafana", {}).get("environment") or {}
if str(grafana_env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() != "false":
    problems.append("Grafana allows anonymous access")
with open(path.rsplit("/", 1)[0] + "/grafana/provisioning/datasources/tidemark.yml") as f:
    sources = yaml.safe_load(f)["datasources"]
pg_source = next((d for d in sources if d.get("type") == "postgres"), {})
if pg_source.get("user") != "tidemark_query" or "$__file{" not in str(
        pg_source.get("secureJsonData", {}).get("password", "")):
    problems.append("Grafana's PostgreSQL data source is not the read-only role with a secret")

sim = " ".join(services.get("simulator", {}).get("command", []))
if "nginx:50051" not in sim:
    problems.append(f"the simulator does not go through the load balancer: {sim}")

with open(path.rsplit("/", 1)[0] + "/prometheus/prometheus.yml") as f:
    prom = yaml.safe_load(f)
scraped = {n for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", [])
           for n in sd["names"]}
for name in expected - {"simulator"}:
    if name not in scraped:
        problems.append(f"Prometheus does not scrape {name}")

# Bounded logs: Docker's json-file driver keeps every line unless given a max-size.
for name, s in services.items():
    logging = s.get("logging") or {}
    if logging.get("driver", "json-file") in ("json-file", "local") and not (
            logging.get("options") or {}).get("max-size"):
        problems.append(f"{name}: its log grows without bound (no logging max-size)")

# nginx follows scaling: each upstream's servers are looked up again while it runs (a zone, a
# resolver and `resolve`, nginx 1.27.3 or later), not once at start.
lb_env = (lb or {}).get("environment") or {}
for var, service in (("INGEST_SERVERS", "ingest"), ("QUERY_SERVERS", "query")):
    servers = str(lb_env.get(var, ""))
    if not ("zone " in servers and "resolver " in servers
            and re.search(rf"server {service}:\d+ [^;]*\bresolve\b", servers)):
        problems.append(f"nginx resolves {service} once at start ({var}: {servers})")
version = str((lb or {}).get("image", "")).split(":")[-1].split("-")[0]
numbers = tuple(int(n) for n in version.split(".") if n.isdigit())
if len(numbers) < 3 or numbers < (1, 27, 3):
    problems.append(f"nginx image {version!r}: `resolve` on upstream servers needs 1.27.3+")

# Durable and self-healing: Kafka's log and offsets survive a recreated container; every
# long-running service comes back after a crash or a reboot; a Tidemark service gets the time
# its shutdown takes (settling what ingest queued, the archive's last batch).
kafka = services.get("kafka", {})
log_dirs = str((kafka.get("environment") or {}).get("KAFKA_LOG_DIRS", ""))
mounted = {v.get("target") if isinstance(v, dict) else str(v).split(":")[1]
           for v in kafka.get("volumes", [])}
if not log_dirs or log_dirs not in mounted:
    problems.append(f"Kafka's log ({log_dirs or 'the image default'}) is not on a volume")
for name, s in services.items():
    one_shot = name in ("kafka-topics", "minio-bucket", "simulator")
    if not one_shot and s.get("restart") not in ("unless-stopped", "always"):
        problems.append(f"{name}: no restart policy, it stays down after a crash or reboot")
for name in tidemark:
    grace = str(services[name].get("stop_grace_period", "10s"))
    seconds = int(grace[:-1]) * (60 if grace.endswith("m") else 1) if grace[-1] in "sm" else 0
    if seconds < 30:
        problems.append(f"{name}: stop_grace_period {grace} cuts its shutdown short")
# Bounded: every long-running Tidemark replica has a CPU and a memory cap.
for name in tidemark:
    s = services[name]
    if not s.get("cpus") or float(s["cpus"]) <= 0:
        problems.append(f"{name}: no CPU cap (cpus)")
    if not s.get("mem_limit"):
        problems.append(f"{name}: no memory cap (mem_limit)")


def size_bytes(value):
    """A compose size ("2g", "512m", or a byte count) in bytes."""
    text = str(value).strip().lower().rstrip("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


# The query replica's Subscribe streams fit in half its memory cap, so that slow subscribers
# are ended by their bounds (RESOURCE_EXHAUSTED) before the replica is killed.
query = services.get("query", {})
if query.get("mem_limit"):
    env = query.get("environment") or {}
    streams = int(env.get("TIDEMARK_MAX_SUBSCRIPTIONS", 1000))
    per_stream = int(env.get("TIDEMARK_SUBSCRIBER_BUFFER_BYTES", 16 << 20))
    if streams * per_stream > size_bytes(query["mem_limit"]) // 2:
        problems.append(f"query: {streams} Subscribe streams of {per_stream} bytes exceed half "
                        f"its mem_limit {query['mem_limit']}")
root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
with open(root + "/.dockerignore") as f:
    ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
if "deploy/secrets" not in ignored:
    problems.append("deploy/secrets (keys, tokens) is sent to the image's build context")

for p in problems:
    print("compose:", p, file=sys.stderr)
print(f"checked {len(tidemark)} Tidemark services: {', '.join(tidemark)}")
sys.exit(1 if problems else 0)
