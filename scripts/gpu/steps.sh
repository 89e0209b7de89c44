# Helpers sourced by the device scripts (factored out of run1.sh / run2.sh after the session; the
# behaviour is the same). Needs W (work dir), OUT (comes back) and TAG (file-name suffix, may be empty).
# pack: archive $W's small outputs (no weights) as $OUT/gpu_results$TAG.tgz.
# step NAME LIMIT CMD...: run CMD under a LIMIT-second timeout into $OUT/NAME.log, append its exit
# code and wall time to $OUT/steps$TAG.txt, then pack, so a later timeout loses nothing finished.
pack() { tar czf $OUT/gpu_results$TAG.tgz -C $W --exclude='*.safetensors' --exclude='*.pt' . 2>/dev/null; }
step() { local name=$1 limit=$2; shift 2; local t0=$(date +%s)
  timeout $limit "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc wall=$(( $(date +%s) - t0 ))s" | tee -a $OUT/steps$TAG.txt; pack; }
