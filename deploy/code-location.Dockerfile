# The code location image: serves the definitions over gRPC (`dagster code-server start`) and
# is the image of every run and step pod. The Helm values run the webserver and the daemon from
# it too, so the control plane and the code share one set of Dagster packages.
#   docker build -f deploy/code-location.Dockerfile -t REGISTRY/flightdelay-code:TAG .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && python -m venv /opt/dvc
ENV PATH=/opt/venv/bin:$PATH
# torch before the project and from the CPU index: nothing in this image trains on a GPU,
# and the project's looser torch range must not pull the CUDA build (gigabytes).
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
# DVC in its own environment: its hydra dependency pins an ANTLR runtime that breaks Dagster's.
RUN /opt/dvc/bin/pip install "dvc[s3]>=3.67,<4"
WORKDIR /src
COPY pyproject.toml ./
COPY orchestration ./orchestration
COPY assets ./assets
COPY resources ./resources
COPY ml ./ml
RUN pip install .

FROM ${PYTHON_IMAGE}
# git: DVC pins outputs in a git repository, and the registry records the commit.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 dagster \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin dagster
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/dvc /opt/dvc
RUN ln -s /opt/dvc/bin/dvc /usr/local/bin/dvc
# The DVC pipeline (what `ml.registry.dvc_repo.init_pipeline_repo` copies into the work volume).
WORKDIR /opt/flightdelay
COPY dvc.yaml params.yaml ./
COPY ml ./ml
# HOME and caches point at /tmp: pods run on a read-only root with an emptyDir there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    DAGSTER_HOME=/opt/dagster/dagster_home
USER 1000:1000
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions", "--location-name", "flightdelay"]
