# The model server's image: `python -m serving` (Starlette on onnxruntime) and nothing else. It loads
# the champion's exported ONNX graph, never torch, and reads the registry from the lake, never
# Dagster, so neither is installed: the image is a fraction of the code location's.
#   docker build -f deploy/serving.Dockerfile -t REGISTRY/flightdelay-serving:TAG .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# What serving/ and the ml/ modules it loads import, at the project's version ranges; a test derives
# the list from the code. The project goes in without its own dependencies, which are the training
# and orchestration stack.
RUN pip install \
    "deltalake>=1.6,<2" \
    "holidays>=0.60" \
    "numpy>=2" \
    "onnx>=1.17" \
    "onnxruntime>=1.20" \
    "polars>=2.1,<3" \
    "prometheus-client>=0.21" \
    "pyarrow>=18" \
    "pydantic>=2.7,<3" \
    "pyyaml>=6" \
    "starlette>=0.46" \
    "uvicorn[standard]>=0.30"
WORKDIR /src
COPY pyproject.toml ./
COPY ml ./ml
COPY serving ./serving
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 1000 serving \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin serving
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/flightdelay
# The server binds every interface inside the container (its default is loopback, for a laptop),
# the API on 8080 and the metrics on 9464 (a NetworkPolicy tells the two apart).
# HOME and the default model cache are under /tmp: pods run on a read-only root with an emptyDir there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PLATFORM_SERVING_HOST=0.0.0.0 \
    PLATFORM_SERVING_PORT=8080 \
    PLATFORM_SERVING_METRICS_HOST=0.0.0.0 \
    PLATFORM_SERVING_METRICS_PORT=9464
USER 1000:1000
EXPOSE 8080 9464
CMD ["python", "-m", "serving"]
