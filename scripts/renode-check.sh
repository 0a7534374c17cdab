#!/usr/bin/env bash
# Runs the project's Renode files in the Docker image (which has Renode; pip and apt do not): builds the image,
# builds the digits ViT (int8) for every target with a Renode platform, runs each build's generated
# renode/<target>.robot with renode-test (the harness's MA-RESULT line must appear on the console UART), then
# `mcu-attn simulate --engine renode` on one sample (bit-exact against the numpy reference).
#   bash scripts/renode-check.sh            (needs a running Docker engine; MCU_ATTN_IMAGE names the image)
# Exit 0: every check passed; 1: a check failed; 2: Docker is not available, nothing was run.
set -euo pipefail

if ! command -v docker >/dev/null 2>&1; then
  echo "renode-check: no docker command on this machine; the Renode check runs in the Docker image and was NOT run" >&2
  exit 2
fi
if ! docker info >/dev/null 2>&1; then
  echo "renode-check: no Docker engine answers here (docker info failed); the Renode check runs in the Docker image and was NOT run" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
image=${MCU_ATTN_IMAGE:-mcu-attn-renode-check}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chmod 777 "$out"

docker build -t "$image" "$root"
for target in stm32f746 stm32f407 stm32h743 nrf52840; do
  echo "renode-check: $target"
  docker run --rm -v "$root/examples:/examples:ro" -v "$out:/out" "$image" \
    build /examples/digits_vit/digits_vit.onnx --target "$target" -o "/out/$target" --bits 8 \
    --calib /examples/digits_vit/data/calib.npy
  docker run --rm -v "$out:/out" -w "/out/$target/renode" --entrypoint renode-test "$image" "$target.robot"
  docker run --rm -v "$out:/out" "$image" simulate "/out/$target" --engine renode --limit 1
done
echo "renode-check: all Renode checks passed"
