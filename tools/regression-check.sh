#!/usr/bin/env bash
# Regression check: the outputs of a set of small CPU runs, bit for bit.
#
#   bash tools/regression-check.sh record DIR [BINARY]    record the runs' outputs into DIR
#   bash tools/regression-check.sh compare A B             diff two recordings (exit 1 if any differ)
#   bash tools/regression-check.sh check BASELINE [BINARY] record into a temporary directory and
#                                                           compare it against BASELINE
#
# BINARY defaults to target/release/suptickets (build it first). Float results depend on the
# kernels' instruction set (AVX2 and AVX-512 sum in different orders), so record and check with
# the same one: SUPTICKETS_ISA=avx2 pins the AVX2 path on any x86-64-v3 machine. The runs: dense, static, SNIP,
# SET, RigL, GraNet, Sup-tickets with each averaging (cia, caa, cima), both batch-norm strategies
# (av, bu), both re-prunings, the ensemble, a stop + resume in the normal phase and one inside the
# cycles, plus `eval --json` and `superpose --json`; wrn-10-1 on 256 Fashion-MNIST training
# images (tools/setup.sh installs the data), 2-4 epochs each, a few minutes on 2 cores. What is
# recorded per run (tools/regression_check.py): report.json and log.jsonl without wall-clock and
# throughput fields, config.toml, and a SHA-256 of every tensor of every checkpoint / ticket file
# (plus their metadata without wall_seconds). Keep baselines outside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
py="$here/regression_check.py"

record() {
  local dest="$1" bin="${2:-$repo/target/release/suptickets}"
  bin="$(realpath "$bin")"
  [ -x "$bin" ] || { echo "regression-check: no binary at $bin (cargo build --release)" >&2; exit 2; }
  local scratch
  scratch="$(mktemp -d /tmp/suptickets-regcheck.XXXXXX)"
  # Relative --out paths so that the recorded configurations do not depend on the scratch dir.
  cd "$scratch"
  local common=(--model wrn-10-1 --dataset fashion-mnist --limit-train 256 --limit-test 128
    --batch-size 64 --eval-batch-size 100 --lr 0.05 --seed 3 --quiet)
  local sparse=(--sparsity 0.8 --update-interval 2)
  local sup=(--suptickets --epochs 4 --cycle-epochs 1 --cycle-fraction 0.5)
  run() { # name, flags...
    local name="$1"; shift
    echo "regression-check: $name" >&2
    local st=0
    "$bin" train "${common[@]}" --out "runs/$name" "$@" >/dev/null 2>"runs-$name.err" || st=$?
    mkdir -p "runs/$name"
    echo "$st" >"runs/$name/exit-status"
  }
  mkdir -p runs
  run dense --method dense --epochs 2
  run static --method static --sparsity 0.8 --epochs 2 --init uniform
  run snip --method snip --sparsity 0.8 --epochs 2
  run snip-layer --method snip --sparsity 0.8 --epochs 2 --snip-scope layer --dense-first-layer
  run set --method set "${sparse[@]}" --epochs 3 --init er
  run rigl --method rigl "${sparse[@]}" --epochs 3 --drop-schedule cosine --schedule cosine
  run rigl-dfl --method rigl "${sparse[@]}" --epochs 3 --dense-first-layer --regrown zero
  run granet --method granet "${sparse[@]}" --epochs 3
  run sup-rigl-cia-av-ens --method rigl "${sparse[@]}" "${sup[@]}" --average cia --bn av --ensemble
  run sup-set-caa-bu --method set "${sparse[@]}" "${sup[@]}" --average caa --bn bu --reprune layerwise
  run sup-granet-cima-av --method granet "${sparse[@]}" "${sup[@]}" --average cima --cima-beta 0.7 --bn av
  run sup-rigl-cima-bu --method rigl "${sparse[@]}" "${sup[@]}" --average cima --bn bu --dense-first-layer
  # stop + resume: in the normal phase (RigL) and inside the cycles (Sup-tickets with the ensemble)
  run resume-rigl --method rigl "${sparse[@]}" --epochs 3 --stop-after 1
  "$bin" train --resume runs/resume-rigl --quiet >/dev/null 2>>runs-resume-rigl.err \
    || echo "$?" >runs/resume-rigl/exit-status
  run resume-sup --method rigl "${sparse[@]}" "${sup[@]}" --ensemble --stop-after 3
  "$bin" train --resume runs/resume-sup --quiet >/dev/null 2>>runs-resume-sup.err \
    || echo "$?" >runs/resume-sup/exit-status
  # eval and superpose of finished runs
  "$bin" eval --checkpoint runs/dense --json >runs/dense/eval.stdout.json
  "$bin" eval --checkpoint runs/sup-rigl-cia-av-ens --json >runs/sup-rigl-cia-av-ens/eval.stdout.json
  "$bin" superpose --run runs/sup-rigl-cia-av-ens --average caa --bn bu --json \
    >runs/sup-rigl-cia-av-ens/superpose-caa-bu.stdout.json
  cd - >/dev/null
  rm -rf "$dest"
  python3 "$py" normalise "$scratch/runs" "$dest"
  rm -rf "$scratch"
  echo "regression-check: recorded $(ls "$dest" | wc -l) runs into $dest" >&2
}

case "${1:-}" in
  record) [ $# -ge 2 ] || { sed -n 4,8p "$0"; exit 2; }; record "$2" "${3:-}" ;;
  compare) [ $# -eq 3 ] || { sed -n 4,8p "$0"; exit 2; }; python3 "$py" compare "$2" "$3" ;;
  check)
    [ $# -ge 2 ] || { sed -n 4,8p "$0"; exit 2; }
    base="$(realpath "$2")"
    new="$(mktemp -d /tmp/suptickets-regcheck-new.XXXXXX)"
    record "$new" "${3:-}"
    python3 "$py" compare "$base" "$new"
    ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
