#!/usr/bin/env python3
"""End-to-end check of a built imgcls image, run for real with podman.

What it proves, in order:

1. the image's own metadata: non-root user, port 8000, a HEALTHCHECK, IMGCLS_HOST=0.0.0.0;
2. a container started the documented way (``-p 127.0.0.1:PORT:8000``) becomes ready
   (``/readyz``), is healthy (``/healthz`` and ``podman healthcheck run``), and classifies real
   photos over HTTP with the same answers as the host CLI (``imgcls predict --format json``);
3. the server process runs as a non-root user;
4. a second container with ``--network none`` (only a loopback interface) and a read-only root
   file system serves the same answers, asked from inside through 127.0.0.1: nothing in the
   image needs the network or writes outside /tmp;
5. SIGTERM (``podman stop``) ends both containers with exit code 0 within a few seconds.

Standard library only, so it runs with any Python 3.9+ on the host. Exit code 0 when every
check passed; the last line says ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER_PORT = 8000  # the image's IMGCLS_PORT
SCORE_TOLERANCE = 1e-4  # same onnxruntime build and weights; only thread scheduling may differ

# Run inside the --network none container: wait for /readyz, then classify the photos
# mounted at /photos through the loopback interface, print the JSON answers.
IN_CONTAINER_CLIENT = r"""
import json, os, sys, time, urllib.request, uuid
base = "http://127.0.0.1:%s" % os.environ.get("IMGCLS_PORT", "8000")
deadline = time.monotonic() + float(sys.argv[1])
while True:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
            if r.status == 200:
                break
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit("not ready: %r" % (exc,))
    time.sleep(0.5)
out = []
for name in sys.argv[2:]:
    boundary = uuid.uuid4().hex
    data = open(os.path.join("/photos", name), "rb").read()
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: image/jpeg\r\n\r\n") % (boundary, name)).encode() + data + \
           ("\r\n--%s--\r\n" % boundary).encode()
    req = urllib.request.Request(base + "/api/v1/classify", data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    with urllib.request.urlopen(req, timeout=60) as r:
        out.append(json.load(r))
print(json.dumps(out))
"""


class Checks:
    """Collects named pass/fail results; the run goes on after a failure where it can."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}", flush=True)
        else:
            self.failed.append(what)
            print(f"  FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def log(msg: str) -> None:
    print(f"[image-test] {msg}", flush=True)


class Podman:
    def __init__(self, runtime: str) -> None:
        self.base = ["podman", "--runtime", runtime]
        os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.base, *args], check=False, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])}... failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def inspect(self, name: str, fmt: str) -> str:
        return self.run("inspect", "--format", fmt, name).stdout.strip()

    def running(self, name: str) -> bool:
        proc = self.run("inspect", "--format", "{{.State.Running}}", name, check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def logs(self, name: str) -> str:
        proc = self.run("logs", name, check=False)
        return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for path in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{path.name}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + path.read_bytes()
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def http(url: str, data: bytes | None = None, content_type: str | None = None, timeout: float = 60):
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def wait_ready(podman: Podman, name: str, base_url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not podman.running(name):
            raise RuntimeError(f"container {name} exited before it was ready:\n{podman.logs(name)}")
        try:
            status, _ = http(base_url + "/readyz", timeout=5)
            if status == 200:
                return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{podman.logs(name)}")


MAX_DIFF = {"score": 0.0}  # largest |server - host| score difference seen, for the log


def compare(server: dict, host: dict) -> str:
    """'' when a server result matches the host CLI's for the same photo, else why not."""
    s_top, h_top = server["top"], host["top"]
    if not s_top or s_top[0]["class_index"] != h_top[0]["class_index"]:
        return f"top-1 {s_top[:1]} != host {h_top[:1]}"
    s_scores = {t["class_index"]: t for t in s_top}
    floor = min(t["score"] for t in s_top) if len(s_top) >= len(h_top) else 0.0
    for h in h_top:
        s = s_scores.get(h["class_index"])
        if s is None:
            # Allowed only as a near-tie at the bottom of the list.
            if h["score"] > floor + SCORE_TOLERANCE:
                return f"class {h['class_index']} ({h['score']:.5f}) missing from the server's top"
            continue
        if s["label"] != h["label"]:
            return f"label {s['label']!r} != host {h['label']!r}"
        MAX_DIFF["score"] = max(MAX_DIFF["score"], abs(s["score"] - h["score"]))
        if abs(s["score"] - h["score"]) > SCORE_TOLERANCE:
            return f"score of {h['label']!r}: {s['score']:.6f} != host {h['score']:.6f}"
    return ""


def host_answers(cli: str, photos: list[Path], model: str, precision: str) -> dict[str, dict]:
    """The host CLI's answers for the same photos, model and precision, by file name."""
    cmd = [cli, "predict", "--format", "json", "--model", model, "--precision", precision, *map(str, photos)]
    log(f"host CLI: {' '.join(cmd[:8])} ... ({len(photos)} photos)")
    start = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"host CLI failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
    log(f"host CLI answered in {time.monotonic() - start:.1f} s")
    return {Path(item["file"]).name: item for item in json.loads(proc.stdout)}


def check_answers(checks: Checks, where: str, responses: list[dict], expected: dict[str, dict]) -> None:
    results = [r for resp in responses for r in resp["results"]]
    seen = set()
    host_model = next(iter(expected.values()))["model"]
    models = sorted({str(resp.get("model")) for resp in responses})
    checks.check(
        models == [host_model], f"{where}: every answer names the host's model {host_model!r}", f"got {models}"
    )
    for result in results:
        name = result["filename"]
        seen.add(name)
        why = compare(result, expected[name]) if name in expected else "not a photo that was sent"
        top = result["top"][0]
        checks.check(not why, f"{where}: {name} -> {top['label']} ({top['score']:.3f}) as on the host", why)
    checks.check(seen == set(expected), f"{where}: an answer for every photo", f"missing {set(expected) - seen}")


def stop_cleanly(checks: Checks, podman: Podman, name: str, where: str) -> None:
    start = time.monotonic()
    podman.run("stop", "-t", "10", name, check=False, timeout=60)
    took = time.monotonic() - start
    code = podman.inspect(name, "{{.State.ExitCode}}")
    checks.check(code == "0", f"{where}: SIGTERM -> exit code 0", f"exit code {code}\n{podman.logs(name)[-3000:]}")
    checks.check(took < 8, f"{where}: stopped in {took:.1f} s (< 8 s, no SIGKILL)")
    logs = podman.logs(name)
    checks.check("Traceback" not in logs, f"{where}: no traceback in the logs", logs[-3000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=os.environ.get("IMGCLS_IMAGE", "localhost/imgcls:latest"))
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared/data/imagenet-samples/dev")
    parser.add_argument("--count", type=int, default=6, help="photos to classify (default 6)")
    parser.add_argument("--host-cli", default=str(REPO / ".venv/bin/imgcls"), help="the host's imgcls")
    parser.add_argument("--runtime", default=os.environ.get("PODMAN_RUNTIME", "runc"))
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument(
        "--network",
        choices=("bridge", "host"),
        default=os.environ.get("IMGCLS_TEST_NETWORK", "bridge"),
        help="how the HTTP container is reached: published port on 127.0.0.1 (bridge), or host network",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the containers, e.g. IMGCLS_PRECISION=int8 for an image built with calibration",
    )
    args = parser.parse_args()
    env_opts = [opt for kv in args.env for opt in ("-e", kv)]

    podman = Podman(args.runtime)
    checks = Checks()
    run_id = uuid.uuid4().hex[:8]
    names: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="imgcls-image-test-"))
    try:
        # -- the photos, and the host CLI's answers for them --------------------------------
        all_photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
        if len(all_photos) < args.count:
            raise RuntimeError(f"need {args.count} photos in {args.photos}, found {len(all_photos)}")
        step = len(all_photos) // args.count
        photos = [all_photos[i * step] for i in range(args.count)]
        photo_dir = workdir / "photos"
        photo_dir.mkdir()
        for p in photos:
            shutil.copyfile(p, photo_dir / p.name)
            (photo_dir / p.name).chmod(0o644)
        photo_dir.chmod(0o755)
        workdir.chmod(0o755)

        # -- the image itself ---------------------------------------------------------------
        log(f"image {args.image}")
        size = int(podman.run("image", "inspect", "--format", "{{.Size}}", args.image).stdout)
        config = json.loads(podman.run("image", "inspect", "--format", "{{json .Config}}", args.image).stdout)
        user = str(config.get("User") or "")
        checks.check(
            user not in ("", "0", "root") and not user.startswith(("0:", "root:")), f"image user is {user!r}, not root"
        )
        checks.check(f"{SERVER_PORT}/tcp" in (config.get("ExposedPorts") or {}), f"image exposes {SERVER_PORT}/tcp")
        # podman keeps HEALTHCHECK beside the OCI config (docker format), not inside it.
        healthcheck = json.loads(podman.run("image", "inspect", "--format", "{{json .HealthCheck}}", args.image).stdout)
        checks.check(
            "/healthz" in " ".join((healthcheck or {}).get("Test") or []), "image has a HEALTHCHECK on /healthz"
        )
        checks.check("IMGCLS_HOST=0.0.0.0" in (config.get("Env") or []), "image sets IMGCLS_HOST=0.0.0.0")
        checks.check(config.get("Cmd") == ["imgcls", "serve"], "image CMD is imgcls serve", str(config.get("Cmd")))

        # -- 1. the documented way: published port on the host's loopback ------------------
        name = f"imgcls-test-{run_id}-http"
        port = free_port()
        if args.network == "bridge":
            net = ["-p", f"127.0.0.1:{port}:{SERVER_PORT}"]
        else:
            net = ["--network", "host", "-e", f"IMGCLS_PORT={port}"]
        names.append(name)
        podman.run("run", "-d", "--name", name, *net, *env_opts, args.image)
        base_url = f"http://127.0.0.1:{port}"
        took = wait_ready(podman, name, base_url, args.ready_timeout)
        checks.check(True, f"http: /readyz after {took:.1f} s ({' '.join(net)})")
        status, _ = http(base_url + "/healthz")
        checks.check(status == 200, "http: /healthz is 200")
        health = podman.run("healthcheck", "run", name, check=False)
        checks.check(health.returncode == 0, "http: podman healthcheck run -> healthy", health.stdout + health.stderr)

        responses = []
        for photo in photos:
            body, ctype = multipart([photo])
            status, raw = http(base_url + "/api/v1/classify", body, ctype)
            responses.append(json.loads(raw))
        model, precision = responses[0].get("model"), responses[0].get("precision")
        checks.check(precision in ("fp32", "int8"), f"http: serves {model} at {precision}")
        expected = host_answers(args.host_cli, photos, str(model), str(precision))
        check_answers(checks, "http", responses, expected)
        # All photos in one request: the server batches them into one model call.
        body, ctype = multipart(photos)
        status, raw = http(base_url + "/api/v1/classify", body, ctype)
        check_answers(checks, "http batch", [json.loads(raw)], expected)

        uid = podman.run("exec", name, "id", "-u").stdout.strip()
        checks.check(uid not in ("", "0"), f"http: exec runs as uid {uid}")
        status_lines = podman.run("exec", name, "cat", "/proc/1/status").stdout
        pid1_uid = next((line.split()[1] for line in status_lines.splitlines() if line.startswith("Uid:")), "")
        checks.check(pid1_uid not in ("", "0"), f"http: the server process runs as uid {pid1_uid}")
        stop_cleanly(checks, podman, name, "http")

        # -- 2. no network at all, read-only root: ask from inside ---------------------------
        name = f"imgcls-test-{run_id}-offline"
        names.append(name)
        podman.run(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--read-only",
            "-v",
            f"{photo_dir}:/photos:ro",
            *env_opts,
            args.image,
        )
        interfaces = podman.run("exec", name, "cat", "/proc/net/dev").stdout
        ifnames = sorted(line.split(":")[0].strip() for line in interfaces.splitlines()[2:] if ":" in line)
        checks.check(ifnames == ["lo"], f"offline: only a loopback interface ({ifnames})")
        start = time.monotonic()
        proc = podman.run(
            "exec",
            name,
            "python3",
            "-c",
            IN_CONTAINER_CLIENT,
            str(args.ready_timeout),
            *[p.name for p in photos],
            check=False,
            timeout=args.ready_timeout + 300,
        )
        if checks.check(
            proc.returncode == 0,
            f"offline: ready and answered in {time.monotonic() - start:.1f} s",
            proc.stderr.strip() + "\n" + podman.logs(name)[-3000:],
        ):
            check_answers(checks, "offline", json.loads(proc.stdout), expected)
        stop_cleanly(checks, podman, name, "offline")

        log(f"largest score difference from the host CLI: {MAX_DIFF['score']:.2e} (tolerance {SCORE_TOLERANCE:g})")
        log(f"image size: {size / 1e6:.0f} MB ({size} bytes)")
    except Exception as exc:  # noqa: BLE001 - a broken step ends the run, counted as a failure
        checks.check(False, "image test ran to the end", f"{type(exc).__name__}: {exc}")
    finally:
        for name in names:
            podman.run("rm", "-f", "-t", "0", name, check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"image-test: {checks.passed} passed, {len(checks.failed)} failed", flush=True)
    for what in checks.failed:
        print(f"  failed: {what}")
    return 0 if not checks.failed else 1


if __name__ == "__main__":
    sys.exit(main())
