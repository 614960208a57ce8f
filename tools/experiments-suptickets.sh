#!/usr/bin/env bash
# The Sup-tickets study of EXPERIMENTS.md: at the same training budget, does the ultimate ticket
# beat (a) the base method and (b) its best single ticket?
#   1. `suptickets compare --config configs/study.toml` (RigL 90%, 30k Fashion-MNIST images,
#      15 epochs = 12 normal + 3 one-epoch cycles, CIA + AV + global re-pruning) for each seed;
#   2. the superposition ablation CIA / CAA / CIMA x AV / BU (+ layer-wise re-pruning) over each
#      seed's saved tickets with `suptickets superpose` (no training: the cycles never depend on
#      the superposition, so this is exactly what those runs would report).
#
#     bash tools/experiments-suptickets.sh            # run what is missing, print the tables
#     bash tools/experiments-suptickets.sh --update   # ... and splice them into EXPERIMENTS.md
#
# A finished run is not run again, so a killed script continues where it stopped. Environment:
# SEEDS (default "0 1 2"), METHODS (default "rigl"; "rigl granet" adds GraNet), OUT
# (default runs/study). The binary is copied to $OUT/suptickets.bin once, so rebuilding the
# crate meanwhile cannot change the runs halfway.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-rigl}
OUT=${OUT:-runs/study}
update=0
[ "${1:-}" = "--update" ] && update=1

cargo build --release --quiet
mkdir -p "$OUT"
bin=$OUT/suptickets.bin
[ -x "$bin" ] || cp target/release/suptickets "$bin"

finished() { [ -f "$1/base/report.json" ] && [ -f "$1/suptickets/report.json" ]; }

for m in $METHODS; do
  for seed in $SEEDS; do
    dir=$OUT/$m-0.9-seed$seed
    if ! finished "$dir"; then
      mkdir -p "$dir"
      cmd=(compare --config configs/study.toml --method "$m" --seed "$seed" --out "$dir" --overwrite --quiet)
      echo "suptickets ${cmd[*]}" >"$dir/command.txt"
      echo "== $dir: suptickets ${cmd[*]}"
      start=$(date +%s)
      nice "$bin" "${cmd[@]}" | tee "$dir/stdout.txt"
      echo "wall=$(($(date +%s) - start))s" >>"$dir/command.txt"
    fi
    abl=$dir/suptickets/ablation.jsonl
    if [ ! -s "$abl" ]; then
      tmp=$abl.tmp
      : >"$tmp"
      for avg in cia caa cima; do
        for bn in av bu; do
          nice "$bin" superpose --run "$dir/suptickets" --average $avg --bn $bn --json | tail -1 >>"$tmp"
        done
      done
      nice "$bin" superpose --run "$dir/suptickets" --reprune layerwise --json | tail -1 >>"$tmp"
      mv "$tmp" "$abl"
    fi
  done
done

python3 tools/experiments_suptickets_table.py "$OUT" "$METHODS" "$SEEDS" >"$OUT/tables.md"
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
