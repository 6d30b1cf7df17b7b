# Sourced by the device-call scripts: Vulkan loader, the carried peers (sbi, sbibm), the binary.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
tar -C /tmp -xJf .whl/peers.tar.xz && export PYTHONPATH=/tmp/pk
B=$PWD/.gpubin/gkl-gpu
export SBIBM_DIR=/tmp/pk/sbibm_data PEERS_DIR=/tmp/pk GKL_BIN=$B PY=python3
