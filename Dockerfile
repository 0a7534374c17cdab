# mcu-attn with the Arm GNU toolchain, QEMU and Renode:
#   docker build -t mcu-attn .
#   docker run --rm -v "$PWD:/work" -w /work mcu-attn build examples/digits_vit/digits_vit.onnx --target stm32 \
#       -o out/digits_stm32 --bits 8 --calib examples/digits_vit/data/calib.npy
#   docker run --rm -v "$PWD:/work" -w /work --entrypoint renode-test mcu-attn out/digits_stm32/renode/stm32f746.robot
FROM python:3.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/mcu-attn

# arm-none-eabi-gcc + newlib, make, CMake, QEMU: the script CI runs too
COPY scripts/install-system-deps.sh scripts/install-system-deps.sh
RUN bash scripts/install-system-deps.sh && rm -rf /var/lib/apt/lists/*

# Renode, from its official GitHub release: the portable Linux build with its own .NET runtime (ICU from Debian),
# pinned and checked against its SHA-256 before it is unpacked; renode-test's Robot Framework requirements from pip
ARG RENODE_VERSION=1.16.1
ARG RENODE_SHA256=00e113cdbd0f5354cf2f64bbe3f5a070d8958409542fca66e45ac97d982938c0
# Debian stable's point and security releases replace any pinned package version: libicu72 is pinned by its name
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libicu72 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        "https://github.com/renode/renode/releases/download/v${RENODE_VERSION}/renode-${RENODE_VERSION}.linux-portable-dotnet.tar.gz" \
        /tmp/renode.tar.gz \
    && echo "${RENODE_SHA256}  /tmp/renode.tar.gz" | sha256sum --check --strict - \
    && mkdir -p /opt/renode \
    && tar -xzf /tmp/renode.tar.gz -C /opt/renode --strip-components=1 \
    && rm /tmp/renode.tar.gz \
    && ln -s /opt/renode/renode /usr/local/bin/renode \
    && ln -s /opt/renode/renode-test /usr/local/bin/renode-test \
    && pip install --no-cache-dir -r /opt/renode/tests/requirements.txt

COPY pyproject.toml README.md ./
COPY mcu_attn mcu_attn
COPY examples examples
RUN pip install --no-cache-dir .

WORKDIR /work
ENTRYPOINT ["mcu-attn"]
CMD ["--help"]
