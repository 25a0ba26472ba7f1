#!/usr/bin/env bash
# Rebuild the default model shipped in satgen_geo/models/ from the real data in ../shared.
# Runs on a 2-core CPU in about 20 minutes. Usage: bash scripts/train_default_model.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data/train}
EPOCHS=${1:-100}
DATA=build/default-data
RUN=build/default-run
rm -rf "$DATA" "$RUN"

# 1. training pairs: SatGen-CV seed pairs (roads + buildings), Massachusetts roads (right 30 %
#    of each tile held out for evaluation), Inria Austin buildings
.venv/bin/satgen dataset prepare "$SHARED/seed-pairs" --layout satgen-cv -o "$DATA"
.venv/bin/satgen dataset prepare "$SHARED/massachusetts" --layout roads --stride 64 --holdout-right 0.3 -o "$DATA"
.venv/bin/satgen dataset prepare "$SHARED/inria-austin" --layout buildings -o "$DATA"

# 2. train a compact generator (16 base features, 3.4 M parameters) with the recipe's GAN and L1
#    weights; no VGG-19 weights can be downloaded here, so the perceptual term is off. A lighter
#    discriminator (16 features) keeps it from saturating on this small data set.
.venv/bin/satgen train --data "$DATA" -o "$RUN" --name satgen-default-f16 --features 16 --disc-features 16 \
  --epochs "$EPOCHS" --batch-size 8 --lambda-gan 1 --lambda-l1 10 --lambda-perc 0 --checkpoint-every 10 --seed 0 --progress none

# 3. ship it, evaluate it on the held-out region, render the sample area for the model card
cp "$RUN/generator.safetensors" satgen_geo/models/satgen-default.safetensors
.venv/bin/satgen evaluate --data "$DATA" -o build/default-eval
.venv/bin/satgen generate --osm sample_aoi/kotka-suburb.osm.pbf --aoi sample_aoi/aoi.geojson --seed 0 \
  -o build/default-sample.tif --progress none
.venv/bin/python - <<'PY'
import numpy as np, rasterio
from PIL import Image
with rasterio.open("build/default-sample.tif") as ds:
    rgb = ds.read(window=((0, 1024), (0, 1024)))
Image.fromarray(np.moveaxis(rgb, 0, -1)).save("satgen_geo/models/sample_render.png", optimize=True)
PY
cp build/default-eval/report.json satgen_geo/models/heldout_report.json
