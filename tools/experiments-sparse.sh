#!/usr/bin/env bash
# Regenerates the table of EXPERIMENTS.md: dense, static ERK, SNIP, SET, RigL and GraNet at
# sparsity 0.9 and 0.95 on the real Fashion-MNIST, one model, the same epochs and seed for every
# row, run one after the other on the CPU.
#
#     bash tools/experiments-sparse.sh            # run the missing rows, print the table
#     bash tools/experiments-sparse.sh --update   # ... and splice it into EXPERIMENTS.md
#
# Rows whose run directory already holds a finished report.json are not run again (delete
# runs/exp-sparse/<row> to redo one), so a killed script continues where it stopped.
# Settings can be overridden from the environment: MODEL WIDTH EPOCHS LIMIT SEED OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-resnet18}
WIDTH=${WIDTH:-0.125}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-20000}
SEED=${SEED:-0}
OUT=${OUT:-runs/exp-sparse}
update=0
[ "${1:-}" = "--update" ] && update=1

cargo build --release --quiet
bin=target/release/suptickets
mkdir -p "$OUT"

common=(--model "$MODEL" --width "$WIDTH" --dataset fashion-mnist --epochs "$EPOCHS"
  --limit-train "$LIMIT" --schedule cosine --lr 0.1 --batch-size 128 --seed "$SEED"
  --eval-every "$EPOCHS" --quiet)

rows=(
  "dense|--method dense"
  "static-0.9|--method static --sparsity 0.9 --init erk"
  "snip-0.9|--method snip --sparsity 0.9"
  "set-0.9|--method set --sparsity 0.9"
  "rigl-0.9|--method rigl --sparsity 0.9"
  "granet-0.9|--method granet --sparsity 0.9"
  "static-0.95|--method static --sparsity 0.95 --init erk"
  "snip-0.95|--method snip --sparsity 0.95"
  "set-0.95|--method set --sparsity 0.95"
  "rigl-0.95|--method rigl --sparsity 0.95"
  "granet-0.95|--method granet --sparsity 0.95"
)

for row in "${rows[@]}"; do
  name=${row%%|*}
  read -r -a flags <<<"${row#*|}"
  dir=$OUT/$name
  if [ -f "$dir/report.json" ] && python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["finished"] else 1)' "$dir/report.json"; then
    echo "== $name: done already ($dir)"
    continue
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  cmd=(suptickets train "${common[@]}" "${flags[@]}" --out "$dir")
  printf '%s\n' "${cmd[*]}" >"$dir/command.txt"
  echo "== $name: ${cmd[*]}"
  start=$(date +%s)
  "$bin" "${cmd[@]:1}"
  echo "== $name: $(($(date +%s) - start)) s"
done

python3 - "$OUT" "${rows[@]}" >"$OUT/table.md" <<'PY'
import json, sys
out, rows = sys.argv[1], sys.argv[2:]
print("| method | sparsity | test acc | NLL | ECE | train FLOPs (x dense) | test FLOPs (x dense) | mask updates | wall time | command |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for row in rows:
    name = row.split("|")[0]
    r = json.load(open(f"{out}/{name}/report.json"))
    cmd = open(f"{out}/{name}/command.txt").read().strip()
    upd = ""
    if r.get("update_interval"):
        upd = f"{r['mask_updates']}" + (f" + {r['prune_steps']} prune" if r.get("prune_steps") else "") + f" (ΔT {r['update_interval']})"
    m = r["method"]
    label = {"dense": "dense", "static": "static ERK", "snip": "SNIP", "set": "SET", "rigl": "RigL", "granet": "GraNet"}[m]
    wall = r["wall_seconds"]
    print(f"| {label} | {r['sparsity']:.4f} | {100*r['test_accuracy']:.2f}% | {r['test_nll']:.4f} | {r['test_ece']:.4f} "
          f"| {r['train_flops_multiple']:.4f} | {r['test_flops_multiple']:.4f} | {upd} | {int(wall)//60}m{int(wall)%60:02d}s | `{cmd}` |")
PY
cat "$OUT/table.md"

if [ "$update" = 1 ]; then
  python3 - "$OUT/table.md" EXPERIMENTS.md <<'PY'
import sys
table, doc = open(sys.argv[1]).read(), sys.argv[2]
text = open(doc).read()
begin, end = "<!-- table:begin -->", "<!-- table:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(doc, "w").write(text[:i] + "\n" + table + text[j:])
print(f"updated {doc}")
PY
fi
