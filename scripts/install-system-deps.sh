#!/usr/bin/env bash
# System packages mcu-attn uses on Debian/Ubuntu: Python's venv module (the README installs into a virtual
# environment: Debian and Ubuntu keep `ensurepip` out of python3 and refuse `pip install` into the system Python,
# PEP 668; pip itself comes into the environment with venv, so python3-pip is not needed), the host C compiler
# (host builds and kernel tests), the Arm GNU toolchain with newlib (firmware builds), make and CMake (the
# generated projects), QEMU (an emulation engine) and OpenOCD (`mcu-attn flash --probe openocd`). libc6-dev is
# named because gcc only recommends it and recommends are not installed: without it the host compiler has no C
# library headers. Shared by .ci/run and the Dockerfile, so CI exercises every install step of the image except
# the Renode download, which the Dockerfile does itself.
# Installs only what is missing; needs root (or sudo).
set -euo pipefail
packages=(gcc libc6-dev make cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm openocd)
missing=()
# `python3 -m venv` needs ensurepip: Debian/Ubuntu ship it in python3-venv; a Python from elsewhere (pyenv,
# python.org, the python Docker image) has it already
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3 python3-venv)
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo"
$as_root apt-get update
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y --no-install-recommends "${missing[@]}"
