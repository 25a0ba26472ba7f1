#!/usr/bin/env bash
# Rebuild the default model shipped in satgen_geo/models/ from the real data in ../shared.
# Usage: bash scripts/train_default_model.sh [EPOCHS] [MORE satgen train OPTIONS for the fine-tuning...]
#   1. trains v1's recipe for EPOCHS (default 100; 17.5 minutes on 2 idle cores) -- the shipped model --
#      unless BASE names a generator to start from instead (BASE=path/to/v1.safetensors skips it);
#   2. with FINE_EPOCHS > 0 (default 0), fine-tunes it that many epochs at LR (default 5e-5) with a fresh
#      discriminator and V2_OPTIONS (default: the checkerboard loss, --lambda-period2 20), the issue-16 candidates;
#   3.-4. re-saves it with 32 px overlap and measures it against the shipped model (benchmarks/bench_model_quality.py);
#   5. ships it unless SHIP=0. The candidates measured so far miss the feature-distance bar: see
#      benchmarks/RESULTS_model_quality.txt before shipping one.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data/train}
EPOCHS=${1:-100}
shift || true
FINE_EPOCHS=${FINE_EPOCHS:-0}
LR=${LR:-5e-5}
V2_OPTIONS=${V2_OPTIONS---lambda-period2 20}
SHIP=${SHIP:-1}
DATA=build/default-data
RUN=build/default-run
rm -rf "$DATA" "$RUN" "$RUN-v1"

# 1. training pairs: SatGen-CV seed pairs (roads + buildings), Massachusetts roads (right 30 %
#    of each tile held out for evaluation), Inria Austin buildings
.venv/bin/satgen dataset prepare "$SHARED/seed-pairs" --layout satgen-cv -o "$DATA"
.venv/bin/satgen dataset prepare "$SHARED/massachusetts" --layout roads --stride 64 --holdout-right 0.3 -o "$DATA"
.venv/bin/satgen dataset prepare "$SHARED/inria-austin" --layout buildings -o "$DATA"

# 2. v1: a compact generator (16 base features, 3.4 M parameters) with the recipe's GAN and L1
#    weights; no VGG-19 weights can be downloaded here, so the perceptual term is off. A lighter
#    discriminator (16 features) keeps it from saturating on this small data set.
COMMON=(--data "$DATA" --name satgen-default-f16 --features 16 --disc-features 16 --batch-size 8 --lambda-gan 1
        --lambda-l1 10 --lambda-perc 0 --seed 0 --progress none)
if [ -z "${BASE:-}" ]; then
  .venv/bin/satgen train "${COMMON[@]}" -o "$RUN-v1" --epochs "$EPOCHS" --checkpoint-every 10
  BASE=$RUN-v1/generator.safetensors
fi
mkdir -p "$RUN"
if [ "$FINE_EPOCHS" -gt 0 ]; then
  # shellcheck disable=SC2086  # V2_OPTIONS is a list of options
  .venv/bin/satgen train "${COMMON[@]}" -o "$RUN" --epochs "$FINE_EPOCHS" --lr "$LR" --checkpoint-every 5 \
    --init-generator "$BASE" $V2_OPTIONS "$@"
else
  cp "$BASE" "$RUN/generator.safetensors"
fi

# 3. the shipped spec renders with 32 px window overlap (chosen by measurement, see the model card)
.venv/bin/python - "$RUN/generator.safetensors" "$RUN/shipped.safetensors" <<'PY'
import sys
from dataclasses import replace
from satgen_geo.model.checkpoint import save_generator
from satgen_geo.model.loaded import load_model
model = load_model(sys.argv[1], "cpu")
save_generator(model.generator, replace(model.spec, overlap_px=32), sys.argv[2])
PY

# 4. measure it against the shipped model (checkerboard, roof colour, held-out metrics)
.venv/bin/python benchmarks/bench_model_quality.py --data "$DATA" --checkpoint "new=$RUN/shipped.safetensors" \
  | tee "$RUN/quality.txt"
[ "$SHIP" = 1 ] || exit 0

# 5. ship it, evaluate it on the held-out region, render the sample area for the model card
cp "$RUN/shipped.safetensors" satgen_geo/models/satgen-default.safetensors
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
