# mcu-attn with the Arm toolchain and QEMU: `docker build -t mcu-attn .` then
# `docker run --rm -v "$PWD:/work" -w /work mcu-attn inspect examples/digits_vit/digits_vit.onnx`
FROM python:3.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/mcu-attn
COPY scripts/install-system-deps.sh scripts/install-system-deps.sh
RUN bash scripts/install-system-deps.sh && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY mcu_attn mcu_attn
COPY examples examples
RUN pip install --no-cache-dir .

WORKDIR /work
ENTRYPOINT ["mcu-attn"]
CMD ["--help"]
