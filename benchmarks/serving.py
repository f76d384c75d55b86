"""Requests/s and latency of ``keras-resnet serve`` (or any TensorFlow Serving REST endpoint).

N client threads post a real JPEG (scikit-learn's china.jpg, 640x427) to the ``serving_bytes``
signature as ``{"b64": ...}`` until ``--requests`` have been answered or ``--seconds`` have
passed, whichever comes first. Without ``--url`` it exports an untrained ResNet-20 (10
classes) to a temporary directory and starts ``keras_resnet.serving.serve`` on 127.0.0.1 in a
subprocess, which it stops at the end. ``--device`` picks where that server runs the model
(cpu hides the GPUs from it; gpu requires one); with ``--url`` the device is the remote
server's and ``--device`` only describes this client machine.

    python -m benchmarks.serving [--clients 8] [--requests 200] [--seconds 60] [--batch 1]  # < 1 min
    python -m benchmarks.serving --device gpu --clients 32 --requests 2000
    python -m benchmarks.serving --url http://127.0.0.1:8501 --model resnet20   # a running server
    python -m benchmarks.serving --mixed --clients 64 --requests 2000   # hostile mix, server RSS
    python -m benchmarks.serving --network resnet50 --precision bfloat16 --batch 8  # vs float32

``--mixed`` alternates good requests (the JPEG, a palette BMP) and hostile ones
(an animated GIF of 600 4096x4096 frames, eight 4096x4096 PNGs in one request, JSON nested
100,000 deep, 1 MB of numbers of the wrong shape, a body over the size limit, versions "¹" and
5,000 digits, a truncated JPEG), checks each gets its expected status or 503 "busy" (request
bodies held at once over ``max_pending_bytes``), and samples the server's resident memory
(``/proc/PID/status``, every 0.1 s) when it started the server.

Results: latency percentiles and requests/s on stdout, ``benchmarks/results/serving.json``
(with the machine description).
"""

import argparse
import base64
import collections
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from benchmarks import backends, hardware, report, timing


def sample_jpeg():
    import sklearn.datasets

    path = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
    with open(path, "rb") as f:
        return f.read()


def save(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def gif_bomb(width=4096, height=4096, frames=600):
    """An animated GIF of ``frames`` solid frames: two encoded by PIL, the rest spliced copies."""
    from PIL import Image

    blocks = []
    for colour in (0, 1):
        image = Image.new("P", (width, height), colour)
        image.putpalette([0, 0, 0, 255, 255, 255])
        data = save(image, "GIF")
        start = data.index(b"\x2c\0\0\0\0")  # the image descriptor, at (0, 0)
        blocks.append(data[start:-1])
    return data[:start] + b"".join(blocks[i % 2] for i in range(frames)) + b";"


def mixed_requests(jpeg, model, max_request_bytes):
    """(path, body, expected status) for --mixed: good and hostile requests in turn."""
    import numpy as np
    from PIL import Image

    def images(*encoded):
        return json.dumps({"signature_name": "serving_bytes", "instances": [
            {"b64": base64.b64encode(data).decode("ascii")} for data in encoded]}).encode()

    palette = Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 16, "P")
    palette.putpalette(list(range(48)))
    big_png = save(Image.new("L", (4096, 4096)), "PNG")
    predict = f"/v1/models/{model}:predict"
    good = [(predict, images(jpeg), 200)] * 5 + [(predict, images(save(palette, "BMP")), 200)]
    hostile = [
        (predict, images(gif_bomb()), 413),
        (predict, images(*[big_png] * 8), 413),
        (predict, b"[" * 100_000, 400),
        (predict, b'{"instances": [[' + b"0," * 2**19 + b"0]]}", 400),
        (predict, b" " * (max_request_bytes + 1), 413),
        (f"/v1/models/{model}/versions/\u00b9:predict", images(jpeg), 400),
        (f"/v1/models/{model}/versions/{'9' * 5000}/metadata", b"", 400),
        (predict, images(jpeg[: len(jpeg) // 3]), 400),
    ]
    return [request for pair in zip(good * 2, hostile + hostile[:4]) for request in pair]


class MemorySampler:
    """Resident memory of a process, sampled every ``interval`` s on a thread (Linux)."""

    def __init__(self, pid, interval=0.1):
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self, key="VmRSS"):
        """``key`` of /proc/PID/status in MiB (None if unreadable)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def _run(self):
        while not self._stop.wait(self.interval):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self):
        self.start = self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.end, self.high_water = self.read(), self.read("VmHWM")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


NETWORKS = {"resnet20": {"classes": 10}, "resnet50": {"classes": 1000}}


def export_network(export_dir, name, network="resnet20"):
    """Export an untrained ``network`` (speed does not depend on the weights): ResNet-20 at
    32x32, or ResNet-50 at 224x224, where bfloat16 pays."""
    import keras_resnet
    from keras_resnet import export

    model = keras_resnet.get_model(network, weights=None, **NETWORKS[network])
    return export.export_saved_model(model, export_dir, model_name=name, version=1)


def start_server(export_dir, name, port, timeout, precision="auto"):
    """``keras_resnet.serving.serve`` in a subprocess; returns it once the model answers."""
    code = (f"from keras_resnet.serving import serve; serve({export_dir!r}, port={port}, "
            f"max_request_bytes={MAX_REQUEST_BYTES}, precision={precision!r})")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models/{name}", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    process.wait(10)
    raise RuntimeError(f"The server did not start within {timeout} s (exit code {process.returncode}).")


MAX_REQUEST_BYTES = 16 * 2**20  # of the server started here: the hostile bodies stay small


def drive(url, requests_cycle, clients, requests, seconds, statuses=None):
    """Post ``requests_cycle`` [(path, body, expected status)] in turn from ``clients`` threads.

    Returns (latencies in s of the 200s, errors: unexpected answers, wall seconds); counts each
    status in ``statuses`` (a Counter) when given.
    """
    lock = threading.Lock()
    latencies, errors = [], []
    issued = [0]
    deadline = time.monotonic() + seconds

    def client():
        with httpx.Client(timeout=max(seconds, 1)) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests:
                        return
                    path, body, expected = requests_cycle[issued[0] % len(requests_cycle)]
                    issued[0] += 1
                start = time.perf_counter()
                try:
                    response = http.request("GET" if not body else "POST", url + path, content=body,
                                            headers={"Content-Type": "application/json"})
                    status = response.status_code
                    busy = status == 503 and "busy" in response.text  # max_pending_bytes
                    problem = (None if status == expected or busy else
                               f"{path[:60]}: HTTP {status}, expected {expected}: {response.text[:200]}")
                except httpx.HTTPError as error:
                    status, problem = type(error).__name__, f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - start
                with lock:
                    if statuses is not None:
                        statuses[status] += 1
                    if problem:
                        errors.append(problem)
                    elif status == 200:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)  # each request is bounded by the client timeout
    return latencies, errors, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "serving.json")
    parser.add_argument("--url", help="a running server (default: start one on 127.0.0.1)")
    parser.add_argument("--model", default=None,
                        help="model name on the server (default: the --network's name)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=200, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=60, help="stop after this many seconds")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--warmup", type=int, default=4, help="requests sent before timing")
    parser.add_argument("--network", default="resnet20", choices=sorted(NETWORKS),
                        help="the network exported and served without --url")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="the started server's arithmetic (bfloat16: TensorFlow's oneDNN "
                             "rewrite, on CPUs that multiply bfloat16 natively)")
    parser.add_argument("--mixed", action="store_true",
                        help="rotate through good and hostile requests; sample the server's RSS")
    args = parser.parse_args()
    args.model = args.model or args.network
    for name in ("clients", "requests", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}")
    # Sets CUDA_VISIBLE_DEVICES=-1 for cpu, which the server subprocess inherits.
    backends.select_device(args.device)
    backends.set_seeds(args.seed)
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))

    jpeg = sample_jpeg()
    body = json.dumps({
        "signature_name": "serving_bytes",
        "instances": [{"b64": base64.b64encode(jpeg).decode("ascii")}] * args.batch,
    }).encode()
    good = [(f"/v1/models/{args.model}:predict", body, 200)]
    cycle = mixed_requests(jpeg, args.model, MAX_REQUEST_BYTES) if args.mixed else good

    process, tmp, memory, statuses = None, None, None, collections.Counter()
    try:
        url = args.url
        if url is None:
            tmp = tempfile.TemporaryDirectory()
            export_network(tmp.name, args.model, args.network)
            port = free_port()
            process = start_server(tmp.name, args.model, port, timeout=120,
                                   precision=args.precision)
            url = f"http://127.0.0.1:{port}"
        url = url.rstrip("/")
        _, warm_errors, _ = drive(url, good, 1, args.warmup, args.seconds)
        if warm_errors:
            raise SystemExit(f"Warm-up request failed: {warm_errors[0]}")
        if process is not None and sys.platform.startswith("linux"):
            memory = MemorySampler(process.pid)
            with memory:
                latencies, errors, wall = drive(url, cycle, args.clients, args.requests,
                                                args.seconds, statuses)
        else:
            latencies, errors, wall = drive(url, cycle, args.clients, args.requests, args.seconds,
                                            statuses)
        alive = process is None or process.poll() is None
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if tmp is not None:
            tmp.cleanup()

    if not latencies:
        raise SystemExit(f"No request succeeded; first error: {errors[0] if errors else 'none sent'}")
    result = {
        "network": None if args.url else args.network,
        "precision": None if args.url else args.precision,
        "mixed": args.mixed,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "server_alive": alive,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "images_per_s": len(latencies) * args.batch / wall,
        "latency_ms": {
            "p50": 1000 * timing.percentile(latencies, 50),
            "p90": 1000 * timing.percentile(latencies, 90),
            "p99": 1000 * timing.percentile(latencies, 99),
            "mean": 1000 * statistics.fmean(latencies),
            "max": 1000 * max(latencies),
        },
    }
    print(f"{args.clients} clients, {args.batch} image(s)/request of {len(jpeg)} bytes "
          f"(640x427 JPEG), model {args.model!r} at {url}")
    print(f"{result['requests']} requests in {wall:.1f} s, {len(errors)} errors: "
          f"{result['requests_per_s']:.1f} requests/s, {result['images_per_s']:.1f} images/s")
    latency = result["latency_ms"]
    print(f"latency ms: p50 {latency['p50']:.1f}  p90 {latency['p90']:.1f}  p99 {latency['p99']:.1f}  "
          f"mean {latency['mean']:.1f}  max {latency['max']:.1f}")
    if args.mixed:
        print(f"statuses: {result['statuses']}; server still up: {alive}")
    if memory is not None:
        result["server_rss_mib"] = {
            "start": memory.start, "peak_sampled": max(memory.samples, default=memory.start),
            "end": memory.end, "high_water": memory.high_water,
        }
        rss = result["server_rss_mib"]
        print(f"server RSS MiB: start {rss['start']:.0f}  peak {rss['peak_sampled']:.0f} "
              f"(high-water mark {rss['high_water']:.0f})  end {rss['end']:.0f}")
    if errors:
        print(f"{len(errors)} unexpected answers; first: {errors[0]}")

    settings = {k: v for k, v in vars(args).items()}
    settings["url"] = args.url or "started here (127.0.0.1)"
    report.write_json(args.json, machine, settings, result)


if __name__ == "__main__":
    main()
