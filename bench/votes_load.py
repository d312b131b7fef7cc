"""Vote load: concurrent simulated annotators doing next → vote against gunicorn + PostgreSQL.

    python bench/votes_load.py                       # 64 clients, 20 s, PostgreSQL at 127.0.0.1:5432
    python bench/votes_load.py --clients 16 --seconds 10

It creates a fresh database (``imagerlhf_bench``), a campaign of ``--pairs`` pairs (k=3) with one token
per annotator, starts gunicorn on a free port, runs ``--clients`` threads that each log in with a token
and loop ``GET /api/v1/campaigns/{id}/next/`` then ``POST /api/v1/votes/`` (the public REST contract)
until the time is up, and reports cycles/s with p50/p99 cycle latency. Beside it, in the same run, it
measures PostgreSQL's raw single-row insert rate (one connection, autocommit) as the ceiling of the
hardware. Everything runs on this machine: the load generator competes with the server for the cores.
Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "imagerlhf_bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_insert_rate(dsn: str, seconds: float = 3.0) -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_insert (id bigserial primary key, a int, b text)")
        count, deadline = 0, time.perf_counter() + seconds
        began = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute("INSERT INTO bench_insert (a, b) VALUES (%s, %s)", (count, "x"))
            count += 1
        return count / (time.perf_counter() - began)


def prepare(env: dict, annotators: int, pairs: int) -> dict:
    """Migrate the bench database and create the campaign, its annotators and their tokens."""
    code = f"""
import io, json
import django; django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from PIL import Image
from rest_framework.authtoken.models import Token
from feedback import services
from generators import services as gen
from generators.models import ModelVersion
call_command("migrate", verbosity=0)
base = gen.base_model_register(name="bench", source="org/bench")
version = ModelVersion.objects.get(base_model=base)
prompts = gen.prompt_set_create(name="bench", split="train", prompts=[f"p{{i}}" for i in range({pairs})])
def png(i):
    b = io.BytesIO(); Image.new("RGB", (8, 8), (i % 256, i // 256 % 256, 0)).save(b, format="PNG"); return b.getvalue()
for i, prompt in enumerate(prompts.prompts.all()):
    gen.generated_images_store_batch(model_version=version, settings={{}}, settings_hash="0" * 64,
        images=[(prompt, s, png(2 * i + s), 8, 8) for s in (0, 1)])
group, _ = Group.objects.get_or_create(name="annotator")
users = []
for i in range({annotators}):
    u = get_user_model().objects.create_user(username=f"bench{{i}}", password="x")
    u.groups.add(group); users.append(u)
campaign = services.campaign_create(name="bench", purpose="collect", prompt_set=prompts, model_versions=[version],
    annotators=users, votes_per_pair=3)
print(json.dumps({{"campaign": campaign.pk, "tokens": [Token.objects.create(user=u).key for u in users]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def client(port: int, campaign: int, token: str, until: float, latencies: list, errors: list) -> None:
    """One simulated annotator: next → vote over a keep-alive connection until ``until``."""
    import http.client

    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < until:
        began = time.perf_counter()
        try:
            conn.request("GET", f"/api/v1/campaigns/{campaign}/next/", headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status == 204:
                return
            if response.status != 200:
                raise RuntimeError(f"next: {response.status} {body[:200]!r}")
            vote = json.dumps({"assignment": json.loads(body)["assignment"], "choice": "left"})
            conn.request("POST", "/api/v1/votes/", body=vote, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status not in (200, 201):
                raise RuntimeError(f"vote: {response.status} {body[:200]!r}")
        except Exception as exc:  # counted and reported
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - began)


def client_process(port: int, campaign: int, tokens: list[str], until: float, queue) -> None:
    """A process of client threads (several processes, so the clients are not bound to one GIL)."""
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=client, args=(port, campaign, token, until, latencies, errors)) for token in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, errors))


def run_clients(port: int, campaign: int, tokens: list[str], seconds: float, processes: int):
    """Run the clients; returns (latencies, errors, elapsed seconds, CPU seconds the clients used)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    until = time.perf_counter() + seconds
    before = os.times()
    began = time.perf_counter()
    workers = [
        context.Process(target=client_process, args=(port, campaign, tokens[i::processes], until, queue))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    after = os.times()
    client_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    latencies = [value for lat, _ in results for value in lat]
    errors = [value for _, err in results for value in err]
    return latencies, errors, elapsed, client_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    dsn = f"{args.pg}/{DB_NAME}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "AUTH_THROTTLE_RATE": "100000/min",
        "PLATFORM_VAR_DIR": str(ROOT / "var" / "bench"),
    }
    insert_rate = raw_insert_rate(dsn)
    world = prepare(env, args.clients, args.pairs)
    # Fresh tables have no planner statistics yet; production's autovacuum keeps them current.
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", "ANALYZE", DB_NAME], check=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.web_workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(args.web_threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        import requests

        for _ in range(100):
            try:
                requests.get(f"{base}/login/", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        latencies, errors, elapsed, client_cpu = run_clients(
            port, world["campaign"], world["tokens"], args.seconds, args.client_processes
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    latencies.sort()
    summary = {
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "cycles": len(latencies),
        "cycles_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
        "errors": len(errors),
        "first_errors": errors[:3],
        "postgres_single_row_inserts_per_second": round(insert_rate, 1),
        "web_workers": args.web_workers,
        "web_threads": args.web_threads,
        "client_processes": args.client_processes,
        "client_cpu_share_of_machine": round(client_cpu / (elapsed * (os.cpu_count() or 1)), 2),
    }
    print(f"{'clients':>8}{'cycles/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'PG inserts/s':>14}")
    print(
        f"{args.clients:>8}{summary['cycles_per_second']:>10}{summary['p50_ms']:>9}{summary['p99_ms']:>9}"
        f"{summary['errors']:>8}{summary['postgres_single_row_inserts_per_second']:>14}"
    )
    print("target: ≥ 300 cycles/s with p99 < 150 ms at 64 clients")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
