"""Region scale, measured: ``osm extract`` throughput and memory, chunk masks, 1 vs 2 Dask workers.

The only real extract here is the 137 KB sample, so larger inputs are made from it: the
sample tiled ``copies`` times side by side (every copy shifted by the sample's extent, with
its own node/way/relation ids), a real street and building pattern at any size.

1. ``osm extract`` of tilings of growing size, in a fresh process each, with the node index
   in memory and in a file: MB/s of PBF, peak RSS (VmHWM) and peak anonymous RSS (the
   process's own memory; a file index's pages are page cache, counted in VmHWM only).
2. The mask of one chunk (1024 px at 1 m) from the store (an R-tree query) against from the
   raw PBF (GDAL's OSM driver reads the whole file every time).
3. A region job with a tiny network (``UNetGenerator(features=8)``) on 1 and 2 local worker
   processes (speed-up), and the peak RSS per worker for two region sizes (flat in size).

Run: ``python benchmarks/bench_region.py`` (a few minutes on 2 cores); ``--help`` for sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
STEP_LON, STEP_LAT = 0.04, 0.02  # the sample's extent: copies tile without overlap
ID_STEP = 10**10


def tile_sample(output: Path, columns: int, rows: int) -> Path:
    """Write the sample tiled ``columns`` × ``rows`` times as one PBF (nodes, then ways, then relations)."""
    import osmium

    copies = [(c, r) for r in range(rows) for c in range(columns)]
    with osmium.SimpleWriter(str(output)) as writer:
        for kind in (osmium.osm.NODE, osmium.osm.WAY, osmium.osm.RELATION):
            for k, (c, r) in enumerate(copies):
                shift = (k + 1) * ID_STEP
                for obj in osmium.FileProcessor(str(SAMPLE), kind):
                    writer.add(_shifted(obj, shift, c * STEP_LON, r * STEP_LAT))
    return output


def _shifted(obj, shift: int, dlon: float, dlat: float):
    if obj.is_node():
        return obj.replace(id=obj.id + shift, location=(obj.location.lon + dlon, obj.location.lat + dlat))
    if obj.is_way():
        return obj.replace(id=obj.id + shift, nodes=[n.ref + shift for n in obj.nodes])
    members = [(m.type, m.ref + shift, m.role) for m in obj.members]
    return obj.replace(id=obj.id + shift, members=members)


@contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Sample /proc/self/status every 20 ms while the block runs: peak VmRSS and RssAnon in MB."""
    peak = {"VmRSS": 0, "RssAnon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    key = line.split(":")[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(line.split()[1]) // 1024)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def child_extract(pbf: str, output: str, index: str) -> None:
    """(Child process) extract once and print JSON: seconds, MB/s, peak memory."""
    from satgen_geo.osm.extract import ExtractConfig, extract_store

    with peak_memory() as memory:
        result = extract_store(pbf, output, config=ExtractConfig(node_index=index))
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"seconds": result.seconds, "mb_s": result.input_bytes / 1e6 / result.seconds,
                      "hwm_mb": hwm, "anon_mb": memory["RssAnon"], "roads": result.n_roads,
                      "buildings": result.n_buildings}))


def bench_extract(folder: Path, tilings: list[int]) -> Path:
    """Section 1; returns the store of the largest tiling."""
    print("\n== osm extract (fresh process per run) ==")
    print(f"{'copies':>7} {'PBF MB':>7} {'index':>7} {'s':>7} {'MB/s':>6} {'peak RSS MB':>11} {'anon RSS MB':>11} "
          f"{'roads':>8} {'buildings':>9}")
    store = folder / "none.gpkg"
    for side in tilings:
        pbf = tile_sample(folder / f"tiled{side}.osm.pbf", side, side)
        for index in ("memory", "file"):
            store = folder / f"tiled{side}-{index}.gpkg"
            out = subprocess.run([sys.executable, __file__, "--child-extract", str(pbf), str(store), index],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{side * side:>7} {pbf.stat().st_size / 1e6:>7.1f} {index:>7} {r['seconds']:>7.2f} {r['mb_s']:>6.1f} "
                  f"{r['hwm_mb']:>11} {r['anon_mb']:>11} {r['roads']:>8} {r['buildings']:>9}", flush=True)
    return store


def bench_chunk_mask(folder: Path, pbf: Path, store: Path) -> None:
    """Section 2: one chunk's halo mask from the store and from the raw PBF."""
    from satgen_geo.engine import RenderConfig
    from satgen_geo.grid import WGS84, aoi_from_bbox
    from satgen_geo.mask import MaskConfig, MaskSource, mask_grid
    from satgen_geo.region.chunks import plan_chunks
    from satgen_geo.region.job import ChunkTask, _write_halo_mask, clip_area

    print("\n== mask of one 1024 px chunk (1 m), inner chunk of the largest tiling ==")
    bbox = (26.93 + 0.01, 60.52 + 0.005, 26.93 + 0.07, 60.52 + 0.035)
    aoi = aoi_from_bbox(bbox)
    grid, area = mask_grid(aoi, MaskConfig())
    chunk = plan_chunks(grid, 1024).chunk(1, 1)
    for name, path in (("store (R-tree)", store), ("raw PBF (GDAL)", pbf)):
        task = ChunkTask(chunk, grid, clip_area(area.geometry, grid, chunk.halo), aoi.to_crs(WGS84).bounds,
                         MaskSource(osm=path, bbox=bbox), MaskConfig(), RenderConfig(), folder, "bench")
        start = time.perf_counter()
        _write_halo_mask(task, folder / f"halo-{name[:3]}.tif")
        print(f"{name:>16}: {time.perf_counter() - start:6.2f} s  ({path.stat().st_size / 1e6:.1f} MB file)", flush=True)


def bench_region(folder: Path, store: Path, sizes: list[int], chunk_px: int) -> None:
    """Section 3: 1 vs 2 workers, and peak RSS per worker for each region size."""
    import torch
    from distributed import Client, LocalCluster

    from satgen_geo.mask import MaskConfig, MaskSource
    from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
    from satgen_geo.model.loaded import load_model
    from satgen_geo.region import RegionConfig, run_region

    torch.manual_seed(0)
    model = load_model(save_generator(UNetGenerator(features=8), ModelSpec(features=8, name="tiny"),
                                      folder / "tiny.safetensors"), "cpu")
    print(f"\n== region job, tiny network, {chunk_px} px chunks, 1 m ==")
    print(f"{'size px':>9} {'workers':>7} {'chunks':>6} {'s':>7} {'speed-up':>8} {'peak RSS / worker MB':>20}")
    for size in sizes:
        west, south = 26.935, 60.5225
        bbox = (west, south, west + size / 55_000.0, south + size / 111_200.0)  # about size × size m
        first = None
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
                    Client(cluster, set_as_default=False) as client:
                config = RegionConfig(chunk_px=chunk_px, scheduler=cluster.scheduler_address, dashboard=False)
                start = time.perf_counter()
                result = run_region(MaskSource(osm=store, bbox=bbox), folder / f"region-{size}-{workers}", model,
                                    MaskConfig(), config=config)
                seconds = time.perf_counter() - start
                rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            first = first or seconds
            print(f"{result.grid.width}×{result.grid.height:<4} {workers:>7} {len(result.plan):>6} {seconds:>7.1f} "
                  f"{first / seconds:>8.2f} {max(rss.values()):>20}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tilings", default="2,6,12", help="copies per side of the tiled PBFs (comma list)")
    parser.add_argument("--sizes", default="1024,2048", help="region sides in px at 1 m (comma list)")
    parser.add_argument("--chunk-px", type=int, default=512)
    args = parser.parse_args()
    tilings = [int(v) for v in args.tilings.split(",")]
    print(f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs")
    with tempfile.TemporaryDirectory(prefix="satgen-bench-") as tmp:
        folder = Path(tmp)
        store = bench_extract(folder, tilings)
        bench_chunk_mask(folder, folder / f"tiled{tilings[-1]}.osm.pbf", store)
        bench_region(folder, store, [int(v) for v in args.sizes.split(",")], args.chunk_px)


def _cpu_model() -> str:
    """The CPU these figures come from (``model name`` of /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child-extract":
        child_extract(*sys.argv[2:])
    else:
        main()
