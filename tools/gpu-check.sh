#!/usr/bin/env bash
# gpu-check.sh: the whole GPU check in one short script, for a lent GPU machine (which has no
# cargo): run it from the repository root over a pack made by `tools/gpu-pack.sh` (release
# binaries in .gpu/bin, test executables in .gpu/tests, Fashion-MNIST in .gpu/data).
#
#   bash tools/gpu-check.sh [STAGES]     STAGES: comma list of tests,rerun,train,bench,sanitize,default,peer
#                                      (default: the first five)
#
# 1. every CUDA test binary with SUPTICKETS_REQUIRE_GPU=1 (a skip is a failure);
# 2. each failed test again in a fresh process (a sticky CUDA error poisons the rest of a binary);
# 3. a short CUDA training run (RigL + Sup-tickets) beside the same run on the CPU;
# 4. `bench --device cuda` beside `bench --device cpu`;
# 5. compute-sanitizer's memcheck over the parity tests, where the machine has it;
# default: the README's job (configs/default.toml) on the GPU;
# peer: the PyTorch peer (.gpu/peer/peer_step.py, if packed) beside `bench --device cuda`.
# Every stage has its own time limit, so a hang costs only that stage. Logs go to $OUT
# (summary.txt plus logs.tar.gz), at most a few files, as the device tool returns them.
set -u
stages=${1:-tests,rerun,train,bench,sanitize}  # also: default, peer
budget=${GPU_CHECK_BUDGET:-400} # seconds: a stage that would start later than budget-60 is skipped
has() { [[ ",$stages," == *",$1,"* ]]; }
root=$(pwd)
pack=$root/.gpu
out=${OUT:-/tmp/gpu-out}
logs=$out/logs
mkdir -p "$logs"
t0=$(date +%s)
say() { echo "[$(($(date +%s) - t0))s] $*" | cut -c1-400 | tee -a "$out/summary.txt"; }
time_left() { [ $(($(date +%s) - t0)) -lt $((budget - 60)) ] || { say "skipped $1: out of time"; return 1; }; }

nv=$(ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda*/lib64/libnvrtc.so* 2>/dev/null | head -1)
[ -n "$nv" ] || nv=$(find / -name 'libnvrtc.so*' -not -path '/proc/*' 2>/dev/null | grep -v builtins | head -1)
if [ -n "$nv" ]; then
  mkdir -p /tmp/nvrtc
  for f in "$(dirname "$nv")"/libnvrtc*; do ln -sf "$f" /tmp/nvrtc/; done
  ln -sf "$nv" /tmp/nvrtc/libnvrtc.so
  export LD_LIBRARY_PATH="/tmp/nvrtc:$(dirname "$nv")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PATH="$PATH:/usr/local/cuda/bin"
export SUPTICKETS_REQUIRE_GPU=1 SUPTICKETS_DATA_DIR="$pack/data" RUST_BACKTRACE=1
bin=$pack/bin/suptickets
export SUPTICKETS_BIN=$bin
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "nvrtc: ${nv:-not found}"
  nproc
} 2>&1 | tee -a "$out/summary.txt"
timeout 60 "$bin" info >"$logs/info.txt" 2>&1
say "info rc=$? $(grep -i 'cuda' "$logs/info.txt" | head -3 | tr '\n' ' ')"

test_exe() { ls "$pack"/tests/"$1"-* 2>/dev/null | head -1; }
failed=()
if has tests; then
  for t in kernels_compile parity cuda_alloc sparse_select suptickets_blocks registry gpu_train suptickets_run; do
    exe=$(test_exe "$t")
    [ -n "$exe" ] || { say "$t: no test executable"; continue; }
    timeout 150 "$exe" --test-threads=1 >"$logs/test-$t.log" 2>&1
    rc=$?
    say "$t rc=$rc $(grep -E '^test result' "$logs/test-$t.log" | tail -1)"
    while read -r name; do failed+=("$t:$name"); done < <(grep -E '^test .* \.\.\. FAILED$' "$logs/test-$t.log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
    grep -E 'skipped' "$logs/test-$t.log" | head -3 | tee -a "$out/summary.txt"
  done
  say "failed tests: ${#failed[@]}"
fi

if has rerun && [ ${#failed[@]} -gt 0 ]; then
  deadline=$(($(date +%s) + 120))
  for f in "${failed[@]}"; do
    [ "$(date +%s)" -lt "$deadline" ] || { say "rerun: out of time"; break; }
    t=${f%%:*} name=${f#*:}
    timeout 20 "$(test_exe "$t")" --exact "$name" --test-threads=1 >"$logs/rerun-$name.log" 2>&1
    rc=$?
    msg=$(grep -E "panicked|Error|error" "$logs/rerun-$name.log" | head -2 | cut -c1-300 | tr '\n' ' ')
    say "rerun $f rc=$rc $msg"
  done
fi

if has train && time_left train; then
  common=(train --model resnet18 --width 0.125 --dataset fashion-mnist --data-dir "$pack/data"
    --epochs 3 --limit-train 4096 --method rigl --sparsity 0.9 --suptickets --cycle-epochs 1
    --cycle-fraction 0.4 --seed 0 --quiet)
  for dev in cuda cpu; do
    s0=$(date +%s)
    timeout 120 "$bin" "${common[@]}" --device "$dev" --out "$out/train-$dev" --overwrite \
      >"$logs/train-$dev.log" 2>&1
    say "train $dev rc=$? wall=$(($(date +%s) - s0))s"
    tail -25 "$logs/train-$dev.log" >>"$out/summary.txt"
    cp "$out/train-$dev/report.json" "$logs/report-$dev.json" 2>/dev/null
    cp "$out/train-$dev/log.jsonl" "$logs/log-$dev.jsonl" 2>/dev/null
    rm -rf "$out/train-$dev"
  done
fi

if has bench && time_left bench; then
  for m in resnet18:0.125 vgg16:1; do
    for dev in cuda cpu; do
      time_left bench || break 2
      timeout 60 "$bin" bench --model "${m%%:*}" --width "${m##*:}" --sparsity 0.95 --device "$dev" \
        --steps 5 --warmup 2 >"$logs/bench-${m%%:*}-$dev.log" 2>&1
      say "bench ${m%%:*} $dev rc=$?"
      head -40 "$logs/bench-${m%%:*}-$dev.log" >>"$out/summary.txt"
    done
  done
fi

if has default && time_left default; then
  s0=$(date +%s)
  timeout 150 "$bin" train --config configs/default.toml --device cuda --data-dir "$pack/data" \
    --out "$out/default-cuda" --overwrite --quiet >"$logs/default-cuda.log" 2>&1
  say "default job on cuda rc=$? wall=$(($(date +%s) - s0))s"
  tail -12 "$logs/default-cuda.log" >>"$out/summary.txt"
  cp "$out/default-cuda/report.json" "$logs/report-default-cuda.json" 2>/dev/null
  rm -rf "$out/default-cuda"
fi

if has peer && [ -f "$pack/peer/peer_step.py" ] && time_left peer; then
  for cfg in vgg16:0.95:erk vgg16:0.9:erk resnet18:0.95:erk; do
    IFS=: read -r m sp init <<<"$cfg"
    time_left peer || break
    for prec in fp32 tf32; do
      timeout 60 python3 "$pack/peer/peer_step.py" --model "$m" --sparsity "$sp" --device cuda \
        --precision "$prec" --batch 128 --steps 20 --warmup 5 >"$logs/peer-$m-$sp-$prec.log" 2>&1
      say "peer $m $sp $prec rc=$? $(grep '^{' "$logs/peer-$m-$sp-$prec.log" | tail -1 | cut -c1-300)"
    done
    timeout 60 "$bin" bench --model "$m" --sparsity "$sp" --init "$init" --device cuda --batch 128 \
      --steps 20 --warmup 5 --no-layers >"$logs/ours-$m-$sp.log" 2>&1
    say "ours $m $sp rc=$? $(grep -E 'inference|train step' "$logs/ours-$m-$sp.log" | tr -s ' ' | tr '\n' ' ')"
  done
fi

if has sanitize && time_left sanitize && command -v compute-sanitizer >/dev/null; then
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 "$(test_exe parity)" --test-threads=1 \
    >"$logs/sanitize-parity.log" 2>&1
  say "compute-sanitizer memcheck parity rc=$? $(grep -E '^test result|ERROR SUMMARY' "$logs/sanitize-parity.log" | tr '\n' ' ')"
  grep -E -m5 -A3 'Invalid|out of bounds' "$logs/sanitize-parity.log" >>"$out/summary.txt"
fi

nvidia-smi --query-gpu=memory.used --format=csv,noheader >>"$out/summary.txt" 2>&1
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
say "done"
