#!/usr/bin/env python3
"""Load test of ``edgefmnist serve`` with Debian's ``wrk``, and the same work done by ``edgefmnist infer`` processes.

    .venv/bin/python scripts/load-test.py                  # docs/service.md's figures (about 3 minutes)
    .venv/bin/python scripts/load-test.py --seconds 5 --overload-seconds 3 --rounds 1 --round-seconds 3 --json

One server process (``edgefmnist serve --port 0``, the shipped model unless ``--model``),
fed real Fashion-MNIST test images as PNG (the first ``--images`` of the test split, posted
as raw ``image/png`` bodies, each connection cycling through them from its own offset):

1. **load**: wrk, ``--clients`` (32) keep-alive connections for ``--seconds`` (60): requests/s,
   latency p50/p99 (wrk's own histogram), errors (connect, read, write, timeout, any status
   other than 200);
2. **services against processes**, interleaved ``--rounds`` times: ``--round-seconds`` of wrk
   with the same clients, then as long with ``--clients`` loops that each run
   ``edgefmnist infer --image X.png --json`` as a fresh process, one after another; the ratio
   of pictures per second (the service's over the processes');
3. **overload**: wrk with ``--overload-clients`` (256) connections for ``--overload-seconds``:
   how many got 200 and how many 503, and the server's peak RSS (``VmHWM`` from
   ``/proc/PID/status``) after the load phase and after the overload.

Each wrk run starts when the server has finished answering the previous one (its
``edgefmnist_requests_in_flight`` gauge), since wrk leaves requests behind when it closes its
connections. On a 2-core machine wrk, the server and the processes share the cores: the figures are what
one box does with its own load generator on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WRK_SCRIPT = """
local bodies, count, offset, statuses = {}, 0, 0, {}
local all_threads = {}
setup = function(thread)
  table.insert(all_threads, thread)
  thread:set("id", #all_threads)
end
init = function(args)
  local folder = args[1]
  for i = 0, tonumber(args[2]) - 1 do
    local f = assert(io.open(string.format("%s/%05d.png", folder, i), "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
  offset = id * 7919
  ok, busy, other = 0, 0, 0
end
request = function()
  count = count + 1
  local body = bodies[((count + offset) % #bodies) + 1]
  return wrk.format("POST", "/v1/classify", {["Content-Type"] = "image/png"}, body)
end
response = function(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 503 then busy = busy + 1 else other = other + 1 end
end
done = function(summary, latency, requests)
  local ok_total, busy_total, other_total = 0, 0, 0
  for _, thread in ipairs(all_threads) do
    ok_total = ok_total + thread:get("ok")
    busy_total = busy_total + thread:get("busy")
    other_total = other_total + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "connect": %d, "read": %d, '
    .. '"write": %d, "timeout": %d, "non_2xx": %d, "ok": %d, "busy": %d, "other": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect, e.read, e.write, e.timeout, e.status, ok_total, busy_total, other_total))
end
"""


def write_pngs(folder: Path, count: int) -> list[Path]:
    """The first ``count`` Fashion-MNIST test images as ``folder/00000.png`` ..."""
    from PIL import Image

    from edgefmnist.data import load_test_split

    test = load_test_split(None)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:05d}.png")
        Image.fromarray(test.images[i], "L").save(paths[-1])
    return paths


def start_server(model: str | None) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "edgefmnist.cli", "serve", "--port", "0"] + (["--model", model] if model else [])
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    line = server.stderr.readline()
    match = re.search(r"on (http://\S+:\d+)", line)
    if not match:
        server.kill()
        raise SystemExit(f"load-test: the server did not start: {line.strip()}")
    return server, match.group(1)


def wait_until_idle(url: str, timeout: float = 60) -> None:
    """Wait until the server answers nothing but this poll (``edgefmnist_requests_in_flight`` is 1).

    wrk closes its connections at the end of a run while the server is still answering them:
    the next phase starts only when those requests are done, so they do not count against it.
    """
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        if re.search(r"^edgefmnist_requests_in_flight 1\.0$", text, re.MULTILINE):
            return
        time.sleep(0.2)
    raise SystemExit(f"load-test: the server at {url} is still busy after {timeout:g} s")


def status_mib(pid: int, field: str) -> float:
    """A memory figure of ``/proc/PID/status``, MiB: ``VmRSS`` (resident now) or ``VmHWM`` (its peak)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def run_wrk(url: str, clients: int, seconds: int, script: Path, folder: Path, images: int) -> dict[str, Any]:
    threads = min(2, clients)
    command = [
        "wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), url, "--", str(folder), str(images),
    ]  # fmt: skip
    wait_until_idle(url)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    result["per_second"] = result["requests"] / result["seconds"]
    result["errors"] = result["connect"] + result["read"] + result["write"] + result["timeout"] + result["non_2xx"]
    return result


def run_processes(paths: list[Path], clients: int, seconds: float, model: str | None) -> dict[str, Any]:
    """``clients`` loops, each running ``edgefmnist infer --image X --json`` processes back to back."""
    deadline = time.monotonic() + seconds
    done = [0] * clients
    failed = [0] * clients
    extra = ["--model", model] if model else []
    executable = shutil.which("edgefmnist", path=str(Path(sys.executable).parent)) or "edgefmnist"

    def loop(n: int) -> None:
        i = n
        while time.monotonic() < deadline:
            path = paths[(i * 7919) % len(paths)]
            result = subprocess.run(
                [executable, "infer", "--image", str(path), "--json", *extra], capture_output=True, text=True
            )
            if result.returncode == 0 and json.loads(result.stdout)[0].get("label"):
                done[n] += 1
            else:
                failed[n] += 1
            i += clients

    start = time.monotonic()
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - start
    return {"requests": sum(done), "errors": sum(failed), "seconds": elapsed, "per_second": sum(done) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an exported .onnx model [default: the shipped one]")
    parser.add_argument("--images", type=int, default=1000, help="test images to post")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved service/process rounds")
    parser.add_argument("--round-seconds", type=int, default=10)
    parser.add_argument("--overload-clients", type=int, default=256)
    parser.add_argument("--overload-seconds", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("load-test: needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="edgefmnist-load-") as temp:
        folder = Path(temp)
        paths = write_pngs(folder, args.images)
        script = folder / "post.lua"
        script.write_text(WRK_SCRIPT)
        server, url = start_server(args.model)
        try:
            report: dict[str, Any] = {
                "idle_rss_mib": status_mib(server.pid, "VmRSS"),
                "load_average_before": os.getloadavg(),
            }
            run_wrk(url, args.clients, 2, script, folder, args.images)  # warm-up
            report["load"] = run_wrk(url, args.clients, args.seconds, script, folder, args.images)
            report["load_peak_rss_mib"] = status_mib(server.pid, "VmHWM")
            rounds = []
            for _ in range(args.rounds):
                service = run_wrk(url, args.clients, args.round_seconds, script, folder, args.images)
                processes = run_processes(paths, args.clients, args.round_seconds, args.model)
                rounds.append({"service": service, "processes": processes})
            if rounds:
                service_total = sum(r["service"]["requests"] for r in rounds)
                process_total = sum(r["processes"]["requests"] for r in rounds)
                report["rounds"] = rounds
                report["service_per_second"] = service_total / sum(r["service"]["seconds"] for r in rounds)
                report["processes_per_second"] = process_total / sum(r["processes"]["seconds"] for r in rounds)
                report["ratio"] = report["service_per_second"] / max(report["processes_per_second"], 1e-9)
            report["overload"] = run_wrk(url, args.overload_clients, args.overload_seconds, script, folder, args.images)
            report["overload_peak_rss_mib"] = status_mib(server.pid, "VmHWM")
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=120)
            report["server_exit"] = server.returncode
        report["cpu"] = os.cpu_count()
        report["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    load, overload = report["load"], report["overload"]
    print(f"load: {args.clients} clients, {load['seconds']:.0f} s: {load['per_second']:.0f} requests/s, "
          f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, errors {load['errors']}")  # fmt: skip
    if "ratio" in report:
        print(f"service {report['service_per_second']:.0f}/s against {args.clients} infer processes "
              f"{report['processes_per_second']:.1f}/s: {report['ratio']:.0f}x")  # fmt: skip
    print(f"overload: {args.overload_clients} clients: {overload['ok']} answered, {overload['busy']} got 503, "
          f"{overload['other']} other, socket errors {overload['connect'] + overload['read'] + overload['write']}, "
          f"timeouts {overload['timeout']}")  # fmt: skip
    print(f"server RSS: idle {report['idle_rss_mib']:.0f} MiB, peak after load {report['load_peak_rss_mib']:.0f} MiB, "
          f"after overload {report['overload_peak_rss_mib']:.0f} MiB; exit {report['server_exit']}")  # fmt: skip
    before, after = report["load_average_before"], report["load_average_after"]
    print(f"machine: {report['cpu']} cores, load average {before[0]:.1f} before, {after[0]:.1f} after")


if __name__ == "__main__":
    main()
