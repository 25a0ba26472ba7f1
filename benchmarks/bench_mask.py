"""Time mask building: the bundled sample extract, and a synthetic 10 km × 10 km city.

The synthetic city is a street lattice every 80 m (residential, with a primary road every
800 m) and 10 × 12 m houses between the streets: 100k+ buildings, ~2,600 street segments,
written to a GeoPackage in UTM 35N and run through the full ``build_mask`` pipeline
(read, select, reproject, buffer, rasterize, write).

Run: ``python benchmarks/bench_mask.py`` (target: synthetic city ≤ 10 s on a 2-core CPU).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely

from satgen_geo.mask import MaskSource, build_mask

ROOT = Path(__file__).resolve().parents[1]
SIZE_M, BLOCK_M, ORIGIN = 10_000.0, 80.0, (490_000.0, 6_700_000.0)


def synthetic_city(folder: Path) -> tuple[Path, Path, int]:
    """Write roads and buildings GeoPackages of the synthetic city; return paths and building count."""
    x0, y0 = ORIGIN
    ticks = np.arange(0.0, SIZE_M + 1, BLOCK_M)
    lines = [shapely.LineString([(x0, y0 + t), (x0 + SIZE_M, y0 + t)]) for t in ticks]
    lines += [shapely.LineString([(x0 + t, y0), (x0 + t, y0 + SIZE_M)]) for t in ticks]
    classes = ["primary" if i % 10 == 0 else "residential" for i in range(len(ticks))] * 2
    roads = gpd.GeoDataFrame({"highway": classes}, geometry=lines, crs=32635)
    # four rows of 3 houses per block (cells of 80 m, houses 10×12 m on a 20 m pitch)
    cx, cy = np.meshgrid(np.arange(0, SIZE_M, BLOCK_M), np.arange(0, SIZE_M, BLOCK_M))
    offsets = np.array([(ox, oy) for ox in (15.0, 35.0, 55.0) for oy in (12.0, 28.0, 44.0, 60.0)])
    hx = (cx.ravel()[:, None] + offsets[:, 0]).ravel() + x0
    hy = (cy.ravel()[:, None] + offsets[:, 1]).ravel() + y0
    houses = shapely.box(hx, hy, hx + 10.0, hy + 12.0)
    buildings = gpd.GeoDataFrame({"building": ["house"] * len(houses)}, geometry=houses, crs=32635)
    roads_path, buildings_path = folder / "roads.gpkg", folder / "buildings.gpkg"
    roads.to_file(roads_path)
    buildings.to_file(buildings_path)
    return roads_path, buildings_path, len(buildings)


def timed(label: str, output: Path, source: MaskSource) -> float:
    """Run build_mask once and print its wall time and output size."""
    start = time.perf_counter()
    result = build_mask(output, source)
    seconds = time.perf_counter() - start
    with rasterio.open(output) as ds:
        fill = [(ds.read(b) > 0).mean() for b in (1, 2)]
    print(
        f"{label}: {seconds:6.2f} s  {result.grid.width}×{result.grid.height} px  "
        f"{result.n_roads} roads, {result.n_buildings} buildings  "
        f"(roads {fill[0]:.1%}, buildings {fill[1]:.1%} of pixels)",
        flush=True,
    )
    return seconds


def main() -> None:
    """Print timings for both areas."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed("sample extract (Kotka, 2.2×2.2 km)", folder / "sample.tif", MaskSource(osm=ROOT / "sample_aoi/kotka-suburb.osm.pbf"))
        roads, buildings, count = synthetic_city(folder)
        seconds = timed(f"synthetic city 10×10 km ({count:,} buildings)", folder / "city.tif", MaskSource(roads=roads, buildings=buildings))
        print(f"target ≤ 10 s for the synthetic city: {'met' if seconds <= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
