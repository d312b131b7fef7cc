"""Vote load: concurrent simulated annotators doing next → vote against gunicorn + PostgreSQL.

    python bench/votes_load.py                       # 64 clients, 20 s per phase, PostgreSQL at 127.0.0.1:5432
    python bench/votes_load.py --clients 16 --seconds 10 --phases two@0
    python bench/votes_load.py --selection uncertainty  # fresh pairs by priority (random priorities, seeded)

It creates a fresh database (``imagerlhf_bench``), a campaign of ``--pairs`` pairs (k=3) with one token
per annotator, starts gunicorn on a free port and runs load phases against it. In each phase
``--clients`` threads (in several processes) each use a token and loop over the public REST contract:
``GET /api/v1/campaigns/{id}/next/`` then ``POST /api/v1/votes/`` (two requests per cycle), or the vote
alone asking for the next pair in its response (``"next": true``, one request per cycle). A phase runs
closed loop (``@0``: every client starts its next cycle as soon as the last one ends, which measures the
most the server can do) or open loop at an offered rate (``@300``: cycles start on a schedule, which
measures latency at that throughput; with closed-loop clients that never pause, Little's law ties
latency to throughput: 64 clients at 300 cycles/s wait 213 ms per cycle on average, whatever the server).
It reports cycles/s, p50/p99 cycle latency and the CPU each cycle cost the web server, PostgreSQL and the
clients. Beside it, in the same run, it measures PostgreSQL's raw single-row insert rate (one connection,
autocommit) as the ceiling of the hardware. Everything runs on this machine: the load generator competes
with the server for the cores. Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
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


def prepare(env: dict, annotators: int, pairs: int, selection: str = "random") -> dict:
    """Migrate the bench database and create the campaign, its annotators and their tokens.

    An ``uncertainty`` campaign gets a seeded random priority per pair, as a refit would write them."""
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
# Stored under the settings a generate run would record (native size 8, fp32), so the campaign finds them.
from generators import selectors as gen_selectors
from generators.sampler_settings import SettingsRequest
gen.base_model_record_native_size(base_model=version.base_model, size=8)
resolved = gen_selectors.resolved_settings(version, SettingsRequest(), "fp32")
for i, prompt in enumerate(prompts.prompts.all()):
    gen.generated_images_store_batch(model_version=version, settings=resolved.as_dict(),
        settings_hash=resolved.digest(), images=[(prompt, s, png(2 * i + s), 8, 8) for s in (0, 1)])
group, _ = Group.objects.get_or_create(name="annotator")
users = []
for i in range({annotators}):
    u = get_user_model().objects.create_user(username=f"bench{{i}}")  # token only: no password to hash
    u.groups.add(group); users.append(u)
campaign = services.campaign_create(name="bench", purpose="collect", prompt_set=prompts, model_versions=[version],
    annotators=users, votes_per_pair=3, selection="{selection}")
if campaign.selection == "uncertainty":
    import random
    rng = random.Random(0)
    services.pair_priorities_set(campaign_id=campaign.pk,
        priorities={{pk: rng.random() for pk in campaign.pairs.values_list("pk", flat=True)}})
assert campaign.status == "open", campaign.status_note
print(json.dumps({{"campaign": campaign.pk, "tokens": [Token.objects.create(user=u).key for u in users]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _request(conn, method: str, path: str, headers: dict, body: str | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def client(
    port: int, campaign: int, token: str, until: float, pace: float, layout: str, latencies: list, errors: list
) -> None:
    """One simulated annotator over a keep-alive connection until ``until``.

    ``layout`` "two": two requests per cycle (``GET next/`` then ``POST votes/``); "one": one, the vote asks
    for the next pair (``"next": true``) after a first ``GET next/``; "floor": ``GET /api/v1/me/`` alone (token
    auth, one query, a small JSON answer: the least an authenticated API request costs on this stack).
    With ``pace`` > 0 the annotator starts
    a cycle every ``pace`` seconds (open loop: the offered rate does not drop when the server slows down) and
    a cycle's latency counts from its scheduled start, so waiting behind a slow cycle is included.
    """
    import http.client
    import random

    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    one_request = layout == "one"
    pending = None  # the pair on screen (one-request mode)
    scheduled = time.perf_counter() + random.random() * pace
    while True:
        if pace:
            time.sleep(max(0.0, scheduled - time.perf_counter()))
        began = scheduled if pace else time.perf_counter()
        if began >= until:
            return
        scheduled += pace
        try:
            if layout == "floor":
                code, body = _request(conn, "GET", "/api/v1/me/", headers)
                if code != 200:
                    raise RuntimeError(f"me: {code} {body[:200]!r}")
                latencies.append(time.perf_counter() - began)
                continue
            if pending is None:
                code, body = _request(conn, "GET", f"/api/v1/campaigns/{campaign}/next/", headers)
                if code == 204:
                    return
                if code != 200:
                    raise RuntimeError(f"next: {code} {body[:200]!r}")
                pending = json.loads(body)
            vote = {"assignment": pending["assignment"], "choice": "left", "next": one_request}
            code, body = _request(conn, "POST", "/api/v1/votes/", headers, json.dumps(vote))
            if code not in (200, 201):
                raise RuntimeError(f"vote: {code} {body[:200]!r}")
            pending = json.loads(body)["next"] if one_request else None
            if one_request and pending is None:
                return
        except Exception as exc:  # counted and reported
            errors.append(repr(exc))
            pending = None
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - began)


def client_process(port: int, campaign: int, tokens: list[str], until: float, pace: float, layout: str, queue) -> None:
    """A process of client threads (several processes, so the clients are not bound to one GIL)."""
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=client, args=(port, campaign, token, until, pace, layout, latencies, errors))
        for token in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, errors))


def run_clients(port: int, campaign: int, tokens: list[str], seconds: float, processes: int, pace: float, layout: str):
    """Run the clients; returns (latencies, errors, elapsed seconds, CPU seconds the clients used)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    until = time.perf_counter() + seconds
    before = os.times()
    began = time.perf_counter()
    workers = [
        context.Process(
            target=client_process,
            args=(port, campaign, tokens[i::processes], until, pace, layout, queue),
        )
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


def _cpu_seconds(processes) -> float:
    """CPU seconds of the live processes plus those of their children that have exited.

    PostgreSQL's backends come and go (Django reopens a connection after ``CONN_MAX_AGE``): an exited backend's
    time moves into the postmaster's ``children_*`` times, so the total stays right across a phase.
    """
    import psutil

    seconds = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds += times.user + times.system + times.children_user + times.children_system
    return seconds


def _cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the web server's processes and of PostgreSQL's."""
    import psutil

    server = psutil.Process(server_pid)
    postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]
    return {"server": _cpu_seconds([server, *server.children(recursive=True)]), "postgres": _cpu_seconds(postgres)}


def _cpu_used(before: dict, after: dict) -> dict[str, float]:
    return {group: after[group] - before[group] for group in after}


def _start_server(port: int, env: dict, workers: int, threads: int, extra: str = "") -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)]
    command += shlex.split(extra)  # later options win: e.g. "--worker-class sync" or "--http-parser python"
    server = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=env, start_new_session=True)
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/login/", timeout=2)
            return server
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def run_phase(port: int, server_pid: int, world: dict, args, layout: str, rate: float) -> dict:
    """One load phase (a request layout at an offered rate, 0 = as fast as the clients can go)."""
    pace = args.clients / rate if rate else 0.0
    before = _cpu_snapshot(server_pid)
    latencies, errors, elapsed, client_cpu = run_clients(
        port, world["campaign"], world["tokens"], args.seconds, args.client_processes, pace, layout
    )
    used = {**_cpu_used(before, _cpu_snapshot(server_pid)), "clients": client_cpu}
    latencies.sort()
    cycles = len(latencies)
    return {
        "layout": layout,
        "requests_per_cycle": 2 if layout == "two" else 1,
        "offered_cycles_per_second": rate or None,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "cycles": cycles,
        "cycles_per_second": round(cycles / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (cycles - 1))], 1) if latencies else None,
        "errors": len(errors),
        "first_errors": errors[:3],
        "cpu_ms_per_cycle": {group: round(1000 * value / max(cycles, 1), 2) for group, value in used.items()},
        "cpu_share_of_machine": round(sum(used.values()) / (elapsed * (os.cpu_count() or 1)), 2),
    }


def _phases(text: str) -> list[tuple[str, float]]:
    """``floor@0,two@0,one@0,one@300``: layout (see ``client``) @ offered cycles/s (0: closed loop)."""
    phases = []
    for item in text.split(","):
        layout, _, rate = item.partition("@")
        if layout not in ("floor", "one", "two"):
            raise argparse.ArgumentTypeError(f"{item!r}: a phase is floor@RATE, one@RATE or two@RATE")
        phases.append((layout, float(rate or 0)))
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--phases", type=_phases, default=_phases("floor@0,two@0,one@0,one@300"), help=_phases.__doc__)
    parser.add_argument(
        "--selection", choices=["random", "uncertainty"], default="random", help="the campaign's hand-out order"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=16)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--server-args", default="", help='more gunicorn options, e.g. "--http-parser python"')
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
    world = prepare(env, args.clients, args.pairs, args.selection)
    # Fresh tables have no planner statistics yet; production's autovacuum keeps them current.
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", "ANALYZE", DB_NAME], check=True)
    port = _free_port()
    server = _start_server(port, env, args.web_workers, args.web_threads, args.server_args)
    try:
        results = [run_phase(port, server.pid, world, args, layout, rate) for layout, rate in args.phases]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    print(f"PostgreSQL single-row inserts/s (one connection, autocommit, same run): {insert_rate:.0f}")
    header = f"{'layout':>8}{'req/cycle':>10}{'offered/s':>10}{'cycles/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(header + "  CPU ms per cycle (server / postgres / clients)")
    for r in results:
        cpu = r["cpu_ms_per_cycle"]
        print(
            f"{r['layout']:>8}{r['requests_per_cycle']:>10}{r['offered_cycles_per_second'] or 'max':>10}"
            f"{r['cycles_per_second']:>10}"
            f"{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}  {cpu['server']} / {cpu['postgres']} / {cpu['clients']}"
        )
    print(f"target: ≥ 300 cycles/s with p99 < 150 ms at {args.clients} clients")
    summary = {
        "clients": args.clients,
        "selection": args.selection,
        "postgres_single_row_inserts_per_second": round(insert_rate, 1),
        "web_workers": args.web_workers,
        "web_threads": args.web_threads,
        "client_processes": args.client_processes,
        "server_args": args.server_args,
        "phases": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
