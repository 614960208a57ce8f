#!/usr/bin/env bash
# Regenerates the Sup-tickets tables of EXPERIMENTS.md on the real Fashion-MNIST:
#   1. `suptickets compare` (base method vs the same method + Sup-tickets, same seed and epochs)
#      for RigL and GraNet (SET with METHODS="rigl granet set") at sparsity 0.9 and 0.95,
#      seeds 0 1 2, aggregated as mean ± sample std over the seeds;
#   2. the superposition ablation on one setting (RigL 0.9, seed 0): CIA vs CAA vs CIMA
#      averaging and AV vs BU batch norm (CIA + AV is the compare run itself).
#
#     bash tools/experiments-suptickets.sh            # run what is missing, print the tables
#     bash tools/experiments-suptickets.sh --update   # ... and splice them into EXPERIMENTS.md
#
# A run whose directory holds a finished report.json is not run again, so a killed script
# continues where it stopped (delete runs/exp-sup/<run> to redo one). Settings come from
# configs/default.toml (RigL + Sup-tickets job: resnet18 x0.125, 5 epochs = 3 normal + 2 one-epoch
# cycles, CIA, global re-prune, AV, ensemble) with these overrides from the environment:
# METHODS SPARSITIES SEEDS LIMIT OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

METHODS=${METHODS:-rigl granet}
SPARSITIES=${SPARSITIES:-0.9 0.95}
SEEDS=${SEEDS:-0 1 2}
LIMIT=${LIMIT:-20000}
OUT=${OUT:-runs/exp-sup}
update=0
[ "${1:-}" = "--update" ] && update=1

cargo build --release --quiet
mkdir -p "$OUT"
# A private copy, so rebuilding the crate while the runs go on cannot change them halfway; an
# existing copy is kept (a continued study uses the binary it started with; delete it to renew).
bin=$OUT/suptickets.bin
[ -x "$bin" ] || cp target/release/suptickets "$bin"
common=(--config configs/default.toml --limit-train "$LIMIT" --quiet)

finished() { # DIR...: every DIR holds a finished report.json
  for d in "$@"; do
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["finished"] else 1)' \
      "$d/report.json" 2>/dev/null || return 1
  done
}

run() { # NAME SUBCOMMAND FLAGS...: run once into $OUT/NAME, log the command and wall time
  local name=$1 sub=$2
  shift 2
  local dir=$OUT/$name
  local cmd=(suptickets "$sub" "${common[@]}" "$@" --out "$dir")
  mkdir -p "$dir"
  printf '%s\n' "${cmd[*]}" >"$dir/command.txt"
  echo "== $name: ${cmd[*]}"
  local start
  start=$(date +%s)
  "$bin" "${cmd[@]:1}" | tee "$dir/stdout.txt"
  echo "== $name: $(($(date +%s) - start)) s"
}

# The ablation first (one setting, seed 0), then the seeds: a time-limited session gets both.
ablation=(
  "caa|--average caa"
  "cima|--average cima"
  "bu|--bn bu"
  "layerwise|--reprune layerwise"
)
for row in "${ablation[@]}"; do
  name=ablation-${row%%|*}
  read -r -a flags <<<"${row#*|}"
  if finished "$OUT/$name"; then
    echo "== $name: done already"
    continue
  fi
  rm -rf "${OUT:?}/$name"
  run "$name" train --suptickets --method rigl --sparsity 0.9 --seed 0 "${flags[@]}"
done

for seed in $SEEDS; do
  for m in $METHODS; do
    for s in $SPARSITIES; do
      name=$m-$s-seed$seed
      if finished "$OUT/$name/base" "$OUT/$name/suptickets"; then
        echo "== $name: done already"
        continue
      fi
      rm -rf "${OUT:?}/$name"
      run "$name" compare --method "$m" --sparsity "$s" --seed "$seed"
    done
  done
done

python3 tools/experiments_suptickets_table.py "$OUT" "$METHODS" "$SPARSITIES" "$SEEDS" >"$OUT/tables.md"
cat "$OUT/tables.md"

if [ "$update" = 1 ]; then
  python3 - "$OUT/tables.md" EXPERIMENTS.md <<'PY'
import sys
table, doc = open(sys.argv[1]).read(), sys.argv[2]
text = open(doc).read()
begin, end = "<!-- suptickets:begin -->", "<!-- suptickets:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(doc, "w").write(text[:i] + "\n" + table + text[j:])
print(f"updated {doc}")
PY
fi
