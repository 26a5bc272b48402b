#!/usr/bin/env bash
# The runs behind the F-CAM paper's main table (Belharbi et al., WACV 2022), on a GPU machine with
# the datasets in place (see docs/reproducing.md, which lists the same commands with the paper's
# numbers beside them and says which settings are the protocol's and which are guesses):
#   data/images/{CUB,OpenImages,ILSVRC}/..., data/masks/OpenImages/..., metadata/{CUB,OpenImages,ILSVRC}/...
# For each dataset and backbone: the CAM* classifier, its CAMs scored on the test split, then one
# F-CAM decoder per seed method (CAM*, GradCAM++ as the F-CAM code computes it, LayerCAM), each scored
# on the test split. A finished step (summary.json / metrics.json present) is skipped; an interrupted
# training step continues with --resume, so rerunning the script picks up where it stopped.
#
# Usage: bash scripts/reproduce_paper.sh [NUM_GPUS] [DATASET ...]
#   NUM_GPUS  processes per run (default 1); the batch of 32 is split over them (1, 2, 4, 8, 16, 32)
#   DATASET   cub, openimages, ilsvrc (default: cub openimages, the paper's datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:-1}
shift || true
DATASETS=("$@")
if [ ${#DATASETS[@]} -eq 0 ]; then DATASETS=(cub openimages); fi
if [ $((32 % GPUS)) -ne 0 ]; then echo "NUM_GPUS must divide the batch of 32, got $GPUS" >&2; exit 2; fi
PER_GPU=$((32 / GPUS))
BACKBONES=(vgg16 inceptionv3 resnet50)

launch() { if [ "$GPUS" -gt 1 ]; then torchrun --nproc_per_node="$GPUS" -m "$@"; else python -m "$@"; fi; }

# train COMMAND RUN_DIR ARGS...: skip a finished run, resume an interrupted one.
train() {
  local command=$1 run=$2; shift 2
  if [ -f "$run/summary.json" ]; then echo "done: $run"; return; fi
  local resume=()
  if [ -f "$run/last.pt" ]; then resume=(--resume); fi
  launch "$command" "$@" --output "$run" "${resume[@]}"
}

# evaluate OUT_DIR ARGS...: score on the test split unless OUT_DIR already holds the results.
evaluate() {
  local out=$1; shift
  if [ -f "$out/metrics.json" ] || [ -f "$out/cam/metrics.json" ]; then echo "done: $out"; return; fi
  launch fcam.cli.eval "$@" --split test --visualize 16 --output "$out"
}

for dataset in "${DATASETS[@]}"; do
  for backbone in "${BACKBONES[@]}"; do
    cfg=configs/${dataset}_${backbone}.yaml
    run=runs/paper/${dataset}_${backbone}
    if [ ! -f "$cfg" ]; then echo "skipping $dataset/$backbone: no $cfg" >&2; continue; fi
    # CAM*: the WSOL classifier, selected on the val split (MaxBoxAcc on boxes, PxAP on masks).
    train fcam.cli.train_cls "$run/cls" --config "$cfg" --set train.batch_size=$PER_GPU
    evaluate "$run/eval_cams" --checkpoint "$run/cls/best.pt" --method cam gradcampp layercam
    # "+ F-CAM" rows: one decoder per seed method.
    for seeds in cam gradcampp layercam; do
      overrides=(cam.method=$seeds fcam.batch_size=$PER_GPU)
      if [ "$seeds" = gradcampp ]; then overrides+=(cam.gradcampp_variant=fcam-wsol); fi
      train fcam.cli.train_decoder "$run/fcam_$seeds" --config "$cfg" --set "${overrides[@]}" \
        --classifier "$run/cls/best.pt"
      evaluate "$run/eval_fcam_$seeds" --checkpoint "$run/cls/best.pt" --decoder "$run/fcam_$seeds/best.pt" \
        --method fcam
    done
  done
done

# One line per scored run: MaxBoxAcc (CUB, ILSVRC) or PxAP (OpenImages) on the test split.
python - <<'EOF'
import json
from pathlib import Path

for path in sorted(Path("runs/paper").glob("*/eval_*/**/metrics.json")):
    metrics = json.loads(path.read_text())
    key = "PxAP" if "PxAP" in metrics else "MaxBoxAcc"
    extra = "" if key == "PxAP" else f"  MaxBoxAccV2 {metrics['MaxBoxAccV2']:.2f}"
    print(f"{str(path.parent.relative_to('runs/paper')):45s} {key} {metrics[key]:.2f}{extra}")
EOF
