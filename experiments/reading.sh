#!/usr/bin/env bash
# Issue 14's registered readings, all at once, on one snapshot of the instrument.
#
#   experiments/reading.sh NAME
#
# copies experiments/results/gt_pilot6.json (growing in the background) to
# experiments/results/reading_NAME/table.json and runs every reading that fidelity.md,
# picks.md and ground_truth.md register on that copy, into the same folder:
#   summary.json           seed-to-seed tau, arch sd / noise sd per budget (ground_truth.md)
#   fidelity_loss.*        the 11 configurations + the rank mix, truth test loss (fidelity.md)
#   fidelity_top1.*        the same, truth test top-1
#   fidelity_loss_new.*    rule 6: kernel sharing vs the default on the networks added after it was chosen
#   bias_<run>.*           the proxy's errors by architecture feature (proxy_bias.py)
#   epochs_long.*          tau against supernet training length (the 48-epoch run)
#   place_<picks>.json     each picks table placed on it (picks.md), test loss
# Proxy scores are cached in the runs, so only networks new since the last reading cost
# anything. Run with PYTHON=... to choose the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: experiments/reading.sh NAME}
case "$name" in *[!A-Za-z0-9_-]*) echo "reading.sh: NAME must be letters, digits, - or _" >&2; exit 2;; esac
py=${PYTHON:-.venv/bin/python}
res=experiments/results
out=$res/reading_$name
[ -e "$out" ] && { echo "reading.sh: $out exists: choose another NAME" >&2; exit 2; }
mkdir -p "$out"
cp $res/gt_pilot6.json "$out/table.json"
t=$out/table.json

$py experiments/ground_truth.py summary "$t" --json "$out/summary.json"

runs=(runs/lat_a:sgld-T1 runs/fid_sgd:sgd runs/fid_t10:sgld-T10 runs/fid_t100:sgld-T100
      runs/fid_fair:fair runs/fid_sandwich:sandwich runs/fid_long:long
      runs/lat_a:recal8:proxy.recal_batches=8 runs/lat_a:val5k:data.val_limit=5000 runs/fid_ks:ks)
contrasts=()
for c in fs:sgld-T1 fs:long sgld-T1:sgd sgld-T10:sgd sgld-T100:sgd fair:sgld-T1 sandwich:sgld-T1 \
         long:sgld-T1 recal8:sgld-T1 val5k:sgld-T1 ks:sgld-T1; do contrasts+=(--contrast "$c"); done
for truth in loss top1; do
  $py experiments/fidelity.py "$t" --truth $truth --k 1,2,4,8 --runs "${runs[@]}" \
      --few-shot fs=0:runs/fid_fs_off,runs/fid_fs_on "${contrasts[@]}" --mix 'sgld-T1 stabilized@8/loss' \
      --out "$out/fidelity_$truth.json" --markdown "$out/fidelity_$truth.md"
done
# rule 6 (fidelity.md): kernel sharing on the networks added after its hypothesis was chosen
$py experiments/fidelity.py "$t" --truth loss --k 1,2,4,8 --runs runs/lat_a:sgld-T1 runs/fid_ks:ks \
    --contrast ks:sgld-T1 --exclude $res/proxy_bias_17/table.json \
    --out "$out/fidelity_loss_new.json" --markdown "$out/fidelity_loss_new.md"
for r in lat_a fid_ks fid_long; do
  $py experiments/proxy_bias.py "$t" --run runs/$r --out "$out/bias_$r.json" --markdown "$out/bias_$r.md"
done
$py experiments/fidelity.py "$t" --truth loss --k 8 --runs runs/fid_long:long --epochs \
    --out "$out/epochs_long.json" --markdown "$out/epochs_long.md"

for picks in $res/gt_picks*.json; do
  case "$picks" in *_place.json) continue;; esac
  $py experiments/picks.py place "$picks" "$t" --json "$out/place_$(basename "$picks" .json).json"
done
echo "reading $name: $out"
