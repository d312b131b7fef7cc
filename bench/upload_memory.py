"""Upload memory: what a dataset upload costs the web process that receives it.

    python bench/upload_memory.py                  # a 105 MiB Pick-a-Pic Parquet file, one gunicorn worker
    python bench/upload_memory.py --mib 50 --uploads 3

It makes a throwaway var folder (SQLite, filesystem broker, media), an engineer with a token and a Parquet
file of incompressible PNG pairs of about ``--mib`` MiB, starts gunicorn (one sync worker, so every request
lands in the process being measured) on a free port, POSTs a small file to warm the upload path up (its
imports), then the big file ``--uploads`` times as multipart, streamed from disk by the client. For the worker
it reports the resident memory after the warm-up, after the last upload (VmRSS) and the peak over the process's
life (VmHWM), with each answer's status and time. No worker runs:
the uploads' import runs stay queued. The var folder is removed at the end. Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PNG_SIDE = 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _noise_png(rng: random.Random) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    data = rng.randbytes(PNG_SIDE * PNG_SIDE * 3)
    Image.frombytes("RGB", (PNG_SIDE, PNG_SIDE), data).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def make_parquet(path: Path, mib: float) -> int:
    """A valid Pick-a-Pic file of about ``mib`` MiB (random-noise PNGs do not compress)."""
    sys.path.insert(0, str(ROOT))
    from feedback.pickapic import PickapicRow, write_parquet

    rng = random.Random(0)
    pair_bytes = 2 * len(_noise_png(rng))
    rows = [
        PickapicRow.from_choice("a", caption=f"prompt {i}", jpg_0=_noise_png(rng), jpg_1=_noise_png(rng))
        for i in range(max(1, int(mib * 2**20 / pair_bytes)))
    ]
    write_parquet(rows, path, check_images=False)
    return path.stat().st_size


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def post_file(port: int, token: str, path: Path, name: str) -> tuple[int, float, str]:
    """POST ``path`` as multipart (``name``, ``file``), streaming it from disk; (status, seconds, body head)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
        yield tail

    length = len(head) + path.stat().st_size + len(tail)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    began = time.perf_counter()
    connection.request(
        "POST",
        "/api/v1/datasets/",
        body=body(),
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        },
    )
    response = connection.getresponse()
    text = response.read().decode(errors="replace")
    connection.close()
    return response.status, time.perf_counter() - began, text[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=105.0, help="size of the Parquet file")
    parser.add_argument("--uploads", type=int, default=2)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    env = {**os.environ, "PLATFORM_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    token = subprocess.run(
        [
            python,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import Group, User; from rest_framework.authtoken.models import Token;"
            "u = User.objects.create_user('bench-engineer');"
            "u.groups.add(Group.objects.get_or_create(name='engineer')[0]);"
            "print(Token.objects.create(user=u).key)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    parquet = var / "upload.parquet"
    size = make_parquet(parquet, args.mib)

    port = _free_port()
    server = subprocess.Popen(
        [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "600"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        worker = _worker_pid(server.pid)
        # A small upload first, so that the baseline holds every module the upload path imports.
        small = var / "small.parquet"
        make_parquet(small, 0.5)
        warm = post_file(port, token, small, "warm-up")
        assert warm[0] in (201, 202), warm  # 201: the code before uploads became runs
        before = _memory(worker)
        answers = [post_file(port, token, parquet, f"bench-{i}") for i in range(args.uploads)]
        after = _memory(worker)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(var, ignore_errors=True)

    mib = 2**20
    print(f"file: {size / mib:.1f} MiB; gunicorn: one sync worker (pid {worker})")
    for i, (status, seconds, text) in enumerate(answers):
        print(f"upload {i}: HTTP {status} in {seconds:.2f} s  {text[:80]}")
    print(f"worker RSS before {before['VmRSS'] / mib:.1f} MiB, after {after['VmRSS'] / mib:.1f} MiB")
    print(
        f"worker peak RSS (VmHWM) {after['VmHWM'] / mib:.1f} MiB: +{(after['VmHWM'] - before['VmRSS']) / mib:.1f} MiB"
    )
    print(
        json.dumps(
            {
                "file_mib": round(size / mib, 1),
                "uploads": args.uploads,
                "statuses": [a[0] for a in answers],
                "seconds": [round(a[1], 2) for a in answers],
                "rss_before_mib": round(before["VmRSS"] / mib, 1),
                "rss_after_mib": round(after["VmRSS"] / mib, 1),
                "peak_rss_mib": round(after["VmHWM"] / mib, 1),
                "peak_growth_mib": round((after["VmHWM"] - before["VmRSS"]) / mib, 1),
                "retained_growth_mib": round((after["VmRSS"] - before["VmRSS"]) / mib, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
