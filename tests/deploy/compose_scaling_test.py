#!/usr/bin/env python3
"""Checks deploy/docker-compose.yml as `docker-compose config` resolves it: every service
built from the Tidemark image can be scaled (no host port, no container_name: a second
replica would collide) and has a health check; clients get in through the load balancer,
which publishes the gRPC ports, and Prometheus scrapes every Tidemark service.

usage: compose_scaling_test.py DOCKER_COMPOSE COMPOSE_FILE"""
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

for p in problems:
    print("compose:", p, file=sys.stderr)
print(f"checked {len(tidemark)} Tidemark services: {', '.join(tidemark)}")
sys.exit(1 if problems else 0)
