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
#   fidelity_loss_rule7.*  rule 7: kernel and width sharing, the same way (replicate means, rule 10)
#   bias_<run>.*           the proxy's errors by architecture feature (proxy_bias.py)
#   epochs_long.*          tau against supernet training length (the 48-epoch run)
#   place_<picks>.json     each picks table placed on it (picks.md), test loss
# The supernets are read through their proxy records (experiments/results/proxy_records/,
# proxy_record.py: every planned network's cells), so a reading needs no supernet on the
# machine. Run with PYTHON=... to choose the interpreter (default .venv/bin/python).
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

R=$res/proxy_records
runs=() have=" "
for r in sgld-T1 sgld-T1-s1 sgld-T1-s2 sgd sgd-s1 sgd-s2 sgld-T10 sgld-T100 fair sandwich long recal8 val5k ks ks-s1 ks-s2 ksw fs zc; do
  if [ -f $R/$r.json ]; then runs+=($R/$r.json); have+="$r "; else echo "reading.sh: no record $R/$r.json yet: left out" >&2; fi
done
contrasts=()
for c in fs:sgld-T1 fs:long sgld-T1:sgd sgld-T10:sgd sgld-T100:sgd fair:sgld-T1 sandwich:sgld-T1 \
         long:sgld-T1 recal8:sgld-T1 val5k:sgld-T1 ks:sgld-T1 ksw:sgld-T1 ksw:ks; do
  case "$have" in *" ${c%%:*} "*) case "$have" in *" ${c##*:} "*) contrasts+=(--contrast "$c");; esac;; esac
done
# rules 8-10: replicates of the default, ks and sgd (every member recorded so far, at least
# two), their replicate means (T1rep, ksrep, sgdrep) and their ensembles (T1ens, ...)
reps=()
for g in "T1=sgld-T1 sgld-T1-s1 sgld-T1-s2" "ks=ks ks-s1 ks-s2" "sgd=sgd sgd-s1 sgd-s2"; do
  m=(); for r in ${g#*=}; do case "$have" in *" $r "*) m+=($r);; esac; done
  if [ ${#m[@]} -ge 2 ]; then
    members=$(IFS=,; echo "${m[*]}")
    reps+=(--replicates "${g%%=*}rep=$members" --ensemble "${g%%=*}ens=$members")
    contrasts+=(--contrast "${g%%=*}ens:${g%%=*}rep"); have+="${g%%=*}rep "
  fi
done
# rule 10: SGLD vs SGD on replicate means; single draws against the default's replicates
for c in ksrep:T1rep T1rep:sgdrep sgld-T10:T1rep sgld-T100:T1rep fair:T1rep sandwich:T1rep ksw:T1rep ksw:ksrep; do
  case "$have" in *" ${c%%:*} "*) case "$have" in *" ${c##*:} "*) contrasts+=(--contrast "$c");; esac;; esac
done
for truth in loss top1; do
  $py experiments/fidelity.py "$t" --truth $truth --k 1,2,4,8 --runs "${runs[@]}" "${reps[@]}" \
      "${contrasts[@]}" --mix 'sgld-T1 stabilized@8/loss' \
      --out "$out/fidelity_$truth.json" --markdown "$out/fidelity_$truth.md"
done
# rule 6 (fidelity.md): kernel sharing on the networks added after its hypothesis was chosen
if [ -f $R/ks.json ]; then
  $py experiments/fidelity.py "$t" --truth loss --k 1,2,4,8 --runs "${runs[@]}" "${reps[@]}" \
      "${contrasts[@]}" --exclude $res/proxy_bias_17/table.json \
      --out "$out/fidelity_loss_new.json" --markdown "$out/fidelity_loss_new.md"
fi
# rule 7 (fidelity.md): kernel and width sharing on the networks added after its snapshot
if [ -f $R/ksw.json ] && [ -f $R/ks.json ]; then
  $py experiments/fidelity.py "$t" --truth loss --k 1,2,4,8 --runs "${runs[@]}" "${reps[@]}" \
      "${contrasts[@]}" --exclude $res/rule7_seen/table.json \
      --out "$out/fidelity_loss_rule7.json" --markdown "$out/fidelity_loss_rule7.md"
fi
for r in sgld-T1 ks ksw long; do
  [ -f $R/$r.json ] || continue
  $py experiments/proxy_bias.py "$t" --run $R/$r.json --out "$out/bias_$r.json" --markdown "$out/bias_$r.md"
done
if [ -f $R/long.json ]; then
  $py experiments/fidelity.py "$t" --truth loss --k 8 --runs $R/long.json --epochs \
      --out "$out/epochs_long.json" --markdown "$out/epochs_long.md"
fi

for picks in $res/gt_picks*.json; do
  case "$picks" in *_place.json) continue;; esac
  $py experiments/picks.py place "$picks" "$t" --json "$out/place_$(basename "$picks" .json).json"
done
echo "reading $name: $out"
