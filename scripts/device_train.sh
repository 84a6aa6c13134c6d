#!/usr/bin/env bash
# On a lent GPU machine (the `device` tool): train several variants of a recipe side by side on
# its one GPU (flux-tiny leaves most of an H200 idle), and send their models and logs back under
# $OUT. The image has PyTorch and transformers but not the MiniLM package, and a call carries
# at most 64 MiB, so prepare it here first:
#   python scripts/device_bundle.py         # MiniLM, pruned to Shapes World's tokens, in .device/
#   device run (carry: [".device"], timeout_s 600):
#     bash scripts/device_train.sh 540 "x01 configs/flux-tiny-gpu-canonical.toml" \
#       "x03 configs/flux-tiny-gpu-canonical.toml flow_train.exchange_weight=0.3"
#   cat <files_at>/NAME.transformer.safetensors.part-* > runs/device/NAME/transformer.safetensors
#   (beside it NAME.ae.safetensors where the recipe trains its own autoencoder, else the shipped
#   one). A call sends back 64 MiB at most: the first two runs' models; a third stays on the
#   machine, for a second call while it is warm (`split -b 15M runs/device/NAME/model/...`).
# SECONDS_TOTAL bounds the whole script: the caches are built first (once, from the first run's
# recipe: every run must share its [data] and autoencoder), then every run trains for what is
# left (flow_train.max_minutes), exports and is packed. A dry run here: OUT=/tmp/out
# EXTRA="device=cpu data.count=200" bash scripts/device_train.sh 240 "a configs/...".
set -uo pipefail
total=${1:?usage: scripts/device_train.sh SECONDS_TOTAL "NAME CONFIG [KEY=VALUE...]"...}
shift
out=${OUT:?OUT is where the device tool collects files}
began=$(date +%s)
export PYTHONPATH="$PWD:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p runs/device "$out/logs"
sets() { for kv in "$@" ${EXTRA:-}; do printf -- '--set\n%s\n' "$kv"; done; }
# tqdm redraws with carriage returns: keep every 50th redraw and every other line.
log() { tr '\r' '\n' | awk '!/it\/s/ || NR % 50 == 0' > "$out/logs/$1.log"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
} > "$out/logs/device.txt" 2>&1
[ -d .device/site ] && python3 scripts/device_bundle.py --restore >> "$out/logs/device.txt" 2>&1

read -r _ config overrides <<< "$1"
mapfile -t first < <(sets $overrides)
cache=runs/device/cache
for stage in ae text; do
  python3 -m fluxai.cli.main train --config "$config" --out "$cache" --stage "$stage" \
    "${first[@]}" 2>&1 | log "cache-$stage"
done
echo "caches: $(( $(date +%s) - began )) s" >> "$out/logs/device.txt"

# What is left, less a margin for loading, the final checkpoint, sample grid, export and packing.
minutes=$(python3 -c "print(max(0.5, ($total - $(( $(date +%s) - began )) - 100) / 60))")
echo "training: $minutes minutes each" >> "$out/logs/device.txt"
names=()
for spec in "$@"; do
  read -r name config overrides <<< "$spec"
  names+=("$name")
  mkdir -p "runs/device/$name"
  # The shared caches (and, for a recipe without init, the autoencoder trained with them).
  for f in scenes.pt latents.pt text.pt autoencoder_report.json autoencoder_state.pt; do
    [ -e "$cache/$f" ] && ln -sf "$PWD/$cache/$f" "runs/device/$name/$f"
  done
  mapfile -t args < <(sets $overrides "flow_train.max_minutes=$minutes")
  timeout "$(( total - $(date +%s) + began ))" python3 -m fluxai.cli.main train \
    --config "$config" --out "runs/device/$name" "${args[@]}" 2>&1 | log "$name" &
done
wait
echo "trained: $(( $(date +%s) - began )) s" >> "$out/logs/device.txt"

# At most 8 files of 16 MiB, 64 MiB together, come back: the logs as one archive, each model
# cut in two, two models at most; the others stay on the machine for a second call to send.
sent=0
for name in "${names[@]}"; do
  run=runs/device/$name
  cp "$run"/loss.png "$out/logs/$name.loss.png" 2>/dev/null
  cp "$(ls "$run"/samples_*.png 2>/dev/null | tail -1)" "$out/logs/$name.samples.png" 2>/dev/null
  [ -f "$run/model/transformer.safetensors" ] || continue
  if [ "$sent" -ge 2 ]; then
    echo "$name: not sent (64 MiB a call); on the machine at $run/model" >> "$out/logs/device.txt"
    continue
  fi
  sent=$((sent + 1))
  split -b 15M "$run/model/transformer.safetensors" "$out/$name.transformer.safetensors.part-"
  # A recipe that trains its own autoencoder (no init) sends it back too.
  [ -f "$run/model/ae.safetensors" ] && \
    ! cmp -s "$run/model/ae.safetensors" fluxai/weights/flux-tiny/ae.safetensors && \
    cp "$run/model/ae.safetensors" "$out/$name.ae.safetensors"
done
echo "total: $(( $(date +%s) - began )) s" >> "$out/logs/device.txt"
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -r "$out/logs"
ls -l "$out"
