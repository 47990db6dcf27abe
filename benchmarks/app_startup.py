"""Cold start and memory of the app: `python app.py` to the first served cut-out, then resident
memory over many requests. Prints figures, asserts nothing.

Peer in the same run: a bare `python -c "import gradio, torch"`, the floor any Gradio + PyTorch
app pays before it can serve, so the ratio shows what our own start-up adds.

    .venv/bin/python benchmarks/app_startup.py [--requests 200] [--model u2netp]

Weights come from U2NET_HOME (default ../shared/weights), offline.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of `pid` in MiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model", default="u2netp")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("U2NET_HOME", str(ROOT.parent / "shared" / "weights"))

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio, torch"], check=True, env=env)
    imports_s = time.perf_counter() - start

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        client = None
        while client is None:
            if proc.poll() is not None:
                print(Path(log.name).read_text()[-3000:])
                return 1
            try:
                client = Client(url, verbose=False)
            except Exception:
                time.sleep(0.2)
        cat = handle_file(str(ROOT / "examples" / "cat.jpg"))
        client.predict(cat, args.model, 0.0, 0.0, True, "PNG", api_name="/remove_background")
        first_result_s = time.perf_counter() - start
        after_first, _ = rss_mib(proc.pid)

        # Distinct controls each time, so every request renders (the mask itself is cached).
        samples = []
        for i in range(args.requests):
            client.predict(cat, args.model, (i % 10) / 20, 0.0, True, "PNG", api_name="/remove_background")
            if (i + 1) % max(1, args.requests // 4) == 0:
                samples.append(rss_mib(proc.pid)[0])
        now, peak = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"import gradio + torch alone (peer): {imports_s:.1f} s")
    print(f"python app.py -> first cut-out served ({args.model}, weights cached): {first_result_s:.1f} s "
          f"({first_result_s / imports_s:.1f}x the bare imports)")
    print(f"resident memory after the first result: {after_first:.0f} MiB")
    print(f"resident memory over {args.requests} requests (each quarter): "
          + ", ".join(f"{m:.0f}" for m in samples) + f" MiB; end {now:.0f} MiB, peak {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
