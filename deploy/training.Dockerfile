# The training image: the same entrypoint as everywhere (`python -m ml.training.train`), on a GPU node.
#   docker build -f deploy/training.Dockerfile -t REGISTRY/flightdelay-training:TAG .
#
# No CUDA base image: the PyPI build of torch for Linux x86-64 is the CUDA build and carries its
# CUDA runtime, cuDNN and NCCL as nvidia-* wheels. The node's driver is mounted into the
# container by the NVIDIA container toolkit when the pod asks for `nvidia.com/gpu`; a CUDA base
# would add a second, unused copy of the runtime and a Python other than 3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml ./
COPY orchestration ./orchestration
COPY assets ./assets
COPY resources ./resources
COPY ml ./ml
RUN pip install .

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 1000 train \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin train
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/flightdelay
# Only the driver capabilities training needs. NVIDIA_VISIBLE_DEVICES is left to the device
# plugin: set to `all` in an image it would expose every GPU to pods that asked for none.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
ENTRYPOINT ["python", "-m", "ml.training.train"]
CMD ["--help"]
