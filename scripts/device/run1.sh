#!/usr/bin/env bash
# Device call 1: set-up, adapter, kernel and throughput benches, the NPE speed comparison.
exec > >(tee $OUT/run1.log) 2>&1
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
tar -C /tmp -xJf .whl/peers.tar.xz && export PYTHONPATH=/tmp/pk
B=$PWD/.gpubin/gkl-gpu
nvidia-smi -L; nproc
if ! $B info 2>&1 | grep -qi nvidia; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "set VK_DRIVER_FILES"
fi
$B info 2>&1
python3 -c "import sbi, sbibm; t=sbibm.get_task('two_moons'); print('sbi', sbi.__version__, t.get_observation(1))" 2>&1 | tail -3
echo "== kernels"; timeout 150 $B bench kernels --json > $OUT/kernels.json 2> /tmp/kernels.log; tail -3 /tmp/kernels.log; cat $OUT/kernels.json | head -c 3000
echo "== throughput"; timeout 200 $B bench throughput --batches 256,4096 --out $OUT/throughput.json 2>&1 | tail -40
echo "== npe speed"
PY=python3 PEERS_DIR=/tmp/pk SBIBM_DIR=/tmp/pk/sbibm_data GKL_BIN=$B timeout 240 scripts/npe_speed.sh /tmp/speed 2>&1 | tail -5
cp /tmp/speed/ours/metrics.jsonl $OUT/speed_metrics.jsonl; cp /tmp/speed/sbi.json $OUT/speed_sbi.json
