"""Tile server benchmark: the sample area as one GeoTIFF against the same area as XYZ tiles from ``satgen serve``.

Measured in one run, with the shipped model, torch fp32 unless ``--backend``/``--precision``:

1. **GeoTIFF**: :func:`satgen_geo.pipeline.generate` of the bundled Kotka extract (what
   ``satgen generate --osm sample_aoi/kotka-suburb.osm.pbf`` runs), in this process after the
   model is loaded: wall time (mask + render) and output pixels per second;
2. **tiles**: ``satgen serve --tiles`` of the same file in a child process (as deployed: its own
   model load and allocator setting, not timed), a fresh tile cache, over a socket with httpx;
   the zoom 17 (native) tiles covering the area, in a fixed order (row by row):

   * cold: each tile's first request, one at a time, on the empty cache (renders chunks);
   * warm: the same tiles again, one at a time (read from the cached chunks, reprojected, PNG);
   * warm throughput: ``--clients`` threads, each with its own client, cycling through the tiles
     for ``--seconds`` (the clients share the server's CPUs);

3. the two side by side: time to the first tile and all tiles cold against the whole GeoTIFF,
   and the pixels each computes (tiles render whole chunks of a grid on a global lattice, so
   they compute more pixels than the area's own GeoTIFF).

Before each timed part the script waits (``--max-wait``) for other processes to leave the CPUs
idle, and flags the timings during which they did not (NOISY; the server's own CPU time is not
counted as other processes').

Run: ``python benchmarks/bench_tiles.py`` (about a minute on 2 idle CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import rasterio
import torch
from bench_render import Contention, wait_quiet

from satgen_geo.backends import BACKENDS, PRECISIONS
from satgen_geo.engine import RenderConfig, resolve
from satgen_geo.mask import MaskConfig, MaskSource
from satgen_geo.model.loaded import load_model
from satgen_geo.pipeline import generate
from satgen_geo.precision import cpu_info
from satgen_geo.runtime import tune_allocator
from satgen_geo.tiles.xyz import TILE_PX, tiles_covering

ROOT = Path(__file__).resolve().parents[1]
OSM = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
ZOOM = 17  # the sample's native zoom (1 m model at 60.5° N)
START_S = 120  # for the server to answer its first request


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a running process (all its threads), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BesideServer(Contention):
    """:class:`Contention` not counting the tile server's own CPU time."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def __enter__(self) -> BesideServer:
        self.server = process_cpu_s(self.pid)
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        super().__exit__(*exc)
        self.cores = max(self.cores - (process_cpu_s(self.pid) - self.server) / wall, 0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(config: RenderConfig, cache: Path, port: int) -> subprocess.Popen:
    """``satgen serve --tiles`` of the sample on ``port``, answering once this returns."""
    command = [sys.executable, "-m", "satgen_geo", "serve", "--tiles", str(OSM), "--port", str(port),
               "--backend", config.backend, "--precision", config.precision, "--tile-cache-dir", str(cache / "tiles")]
    env = {**os.environ, "SATGEN_CACHE_DIR": str(cache)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/tiles/tilejson.json", timeout=5).raise_for_status()
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the tile server did not start: {' '.join(command)}")


def fetch_each(client: httpx.Client, urls: list[str]) -> np.ndarray:
    """Seconds per request, one at a time in order."""
    seconds = []
    for url in urls:
        start = time.perf_counter()
        client.get(url).raise_for_status()
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def throughput(urls: list[str], clients: int, duration: float) -> tuple[int, float]:
    """``(tiles fetched, seconds)`` with ``clients`` threads cycling through ``urls`` for ``duration`` s."""
    counts = [0] * clients
    stop = threading.Event()

    def work(worker: int) -> None:
        with httpx.Client(timeout=60) as client:
            k = worker * len(urls) // clients
            while not stop.is_set():
                client.get(urls[k % len(urls)]).raise_for_status()
                counts[worker] += 1
                k += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - start


def raster_px(path: Path) -> int:
    """Width × height of a raster file."""
    with rasterio.open(path) as dataset:
        return dataset.width * dataset.height


def percentiles(seconds: np.ndarray) -> str:
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (as satgen serve --backend)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="numeric precision (as satgen serve --precision)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the warm throughput run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the warm throughput run")
    parser.add_argument("--max-wait", type=float, default=20.0,
                        help="seconds to wait, before each timed part, for other processes to leave the CPUs idle")
    args = parser.parse_args()
    logging.getLogger("satgen_geo").setLevel(logging.ERROR)  # mask-repair warnings of the sample extract
    tune_allocator()  # as the satgen CLI and the server do
    print(f"bench_tiles, {datetime.date.today().isoformat()}")
    print(f"  CPU: {cpu_info().describe()}; {len(os.sched_getaffinity(0))} cores usable, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")

    with tempfile.TemporaryDirectory(prefix="bench_tiles_") as tmp:
        folder = Path(tmp)
        os.environ["SATGEN_CACHE_DIR"] = str(folder)  # calibration (auto) shared with the server, done untimed here
        model = load_model(None, "cpu")
        config = resolve(model, RenderConfig(backend=args.backend, precision=args.precision))
        print(f"  model {model.spec.name} ({model.spec.gsd_m:g} m/px), {config.backend} {config.precision}; "
              f"area {OSM.name}, tiles at zoom {ZOOM}, {TILE_PX} px PNG\n")

        wait_quiet(args.max_wait, "the GeoTIFF")
        with Contention() as noise:
            start = time.perf_counter()
            result = generate(folder / "area.tif", MaskSource(osm=OSM), model, MaskConfig(), config)
            geotiff_s = time.perf_counter() - start
        grid = result.image.grid
        geotiff_px = grid.width * grid.height
        print(f"GeoTIFF: {grid.width}×{grid.height} px in {geotiff_s:.1f} s (render {result.image.seconds:.1f} s), "
              f"{geotiff_px / geotiff_s / 1e6:.2f} Mpx/s {noise.note()}\n", flush=True)

        port = free_port()
        server = start_server(config, folder, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                bounds = client.get("/tiles/tilejson.json").json()["bounds"]
                urls = [f"http://127.0.0.1:{port}/tiles/{t.z}/{t.x}/{t.y}.png" for t in tiles_covering(bounds, ZOOM)]
                wait_quiet(args.max_wait, "the cold tiles")
                with BesideServer(server.pid) as cold_noise:
                    cold = fetch_each(client, urls)
                wait_quiet(args.max_wait, "the warm tiles")
                with BesideServer(server.pid) as warm_noise:
                    warm = fetch_each(client, urls)
            wait_quiet(args.max_wait, "the warm throughput")
            with BesideServer(server.pid) as load_noise:
                served, load_s = throughput(urls, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
        chunks = [raster_px(path) for path in folder.glob("tiles/*/chunks/*.tif")]

    tile_px = len(urls) * TILE_PX**2
    print(f"tiles: {len(urls)} at zoom {ZOOM}, {tile_px / 1e6:.1f} Mpx of tiles; the cold pass rendered {len(chunks)} chunks")
    print(f"  cold (empty cache, one at a time): {percentiles(cold)}  first {cold[0]:.2f} s, all {cold.sum():.1f} s "
          f"({tile_px / cold.sum() / 1e6:.2f} Mpx/s of tiles) {cold_noise.note()}")
    print(f"  warm (one at a time):              {percentiles(warm)}  all {warm.sum():.2f} s "
          f"({len(urls) / warm.sum():.0f} tiles/s) {warm_noise.note()}")
    print(f"  warm, {args.clients} concurrent clients:      {served / load_s:.0f} tiles/s ({served} tiles in {load_s:.1f} s) "
          f"{load_noise.note()}\n")
    print("side by side")
    print(f"  first tile (cold) / whole GeoTIFF:    {cold[0]:6.2f} s / {geotiff_s:5.1f} s = {cold[0] / geotiff_s:.2f}")
    print(f"  all tiles (cold) / whole GeoTIFF:     {cold.sum():6.1f} s / {geotiff_s:5.1f} s = {cold.sum() / geotiff_s:.2f}")
    print(f"  all tiles (warm) / whole GeoTIFF:     {warm.sum():6.1f} s / {geotiff_s:5.1f} s = {warm.sum() / geotiff_s:.2f}")
    print(f"  pixels rendered, tiles / GeoTIFF:     {sum(chunks) / 1e6:6.1f} Mpx / {geotiff_px / 1e6:5.1f} Mpx = "
          f"{sum(chunks) / geotiff_px:.2f} (whole chunks on the lattice)")
    print(f"  warm tile p50:                        {np.percentile(warm, 50) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
