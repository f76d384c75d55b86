"""Requests/s and latency of ``keras-resnet serve`` (or any TensorFlow Serving REST endpoint).

N client threads post a real JPEG (scikit-learn's china.jpg, 640x427) to the ``serving_bytes``
signature as ``{"b64": ...}`` until ``--requests`` have been answered or ``--seconds`` have
passed, whichever comes first. Without ``--url`` it exports an untrained ResNet-20 (10
classes) to a temporary directory and starts ``keras_resnet.serving.serve`` on 127.0.0.1 in a
subprocess, which it stops at the end. ``--device`` picks where that server runs the model
(cpu hides the GPUs from it; gpu requires one); with ``--url`` the device is the remote
server's and ``--device`` only describes this client machine.

    python benchmarks/serving.py [--clients 8] [--requests 200] [--seconds 60] [--batch 1]  # < 1 min
    python benchmarks/serving.py --device gpu --clients 32 --requests 2000
    python benchmarks/serving.py --url http://127.0.0.1:8501 --model resnet20   # a running server

Results: latency percentiles and requests/s on stdout, ``benchmarks/results/serving.json``
(with the machine description).
"""

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import httpx  # noqa: E402


def sample_jpeg():
    import sklearn.datasets

    path = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
    with open(path, "rb") as f:
        return f.read()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def export_resnet20(export_dir, name):
    """Export an untrained ResNet-20 (speed does not depend on the weights)."""
    import keras_resnet
    from keras_resnet import export

    model = keras_resnet.ResNet20(weights=None, classes=10)
    return export.export_saved_model(model, export_dir, model_name=name, version=1)


def start_server(export_dir, name, port, timeout):
    """``keras_resnet.serving.serve`` in a subprocess; returns it once the model answers."""
    code = f"from keras_resnet.serving import serve; serve({export_dir!r}, port={port})"
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


def drive(url, body, clients, requests, seconds):
    """Post ``body`` from ``clients`` threads; returns (latencies in s, errors, wall seconds)."""
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
                    issued[0] += 1
                start = time.perf_counter()
                try:
                    response = http.post(url, content=body, headers={"Content-Type": "application/json"})
                    ok = response.status_code == 200
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - start
                with lock:
                    (errors.append(problem) if problem else latencies.append(elapsed))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)  # each request is bounded by the client timeout
    return latencies, errors, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, "serving.json")
    parser.add_argument("--url", help="a running server (default: start one on 127.0.0.1)")
    parser.add_argument("--model", default="resnet20", help="model name on the server")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=200, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=60, help="stop after this many seconds")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--warmup", type=int, default=4, help="requests sent before timing")
    args = parser.parse_args()
    for name in ("clients", "requests", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}")
    # Sets CUDA_VISIBLE_DEVICES=-1 for cpu, which the server subprocess inherits.
    common.select_device(args.device)
    common.set_seeds(args.seed)
    machine = common.machine_description(args.device)
    print(common.describe(machine))

    jpeg = sample_jpeg()
    body = json.dumps({
        "signature_name": "serving_bytes",
        "instances": [{"b64": base64.b64encode(jpeg).decode("ascii")}] * args.batch,
    }).encode()

    process, tmp = None, None
    try:
        url = args.url
        if url is None:
            tmp = tempfile.TemporaryDirectory()
            export_resnet20(tmp.name, args.model)
            port = free_port()
            process = start_server(tmp.name, args.model, port, timeout=120)
            url = f"http://127.0.0.1:{port}"
        predict_url = f"{url.rstrip('/')}/v1/models/{args.model}:predict"
        _, warm_errors, _ = drive(predict_url, body, 1, args.warmup, args.seconds)
        if warm_errors:
            raise SystemExit(f"Warm-up request failed: {warm_errors[0]}")
        latencies, errors, wall = drive(predict_url, body, args.clients, args.requests, args.seconds)
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
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "images_per_s": len(latencies) * args.batch / wall,
        "latency_ms": {
            "p50": 1000 * common.percentile(latencies, 50),
            "p90": 1000 * common.percentile(latencies, 90),
            "p99": 1000 * common.percentile(latencies, 99),
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
    if errors:
        print(f"first error: {errors[0]}")

    settings = {k: v for k, v in vars(args).items()}
    settings["url"] = args.url or "started here (127.0.0.1)"
    common.write_json(args.json, machine, settings, result)


if __name__ == "__main__":
    main()
