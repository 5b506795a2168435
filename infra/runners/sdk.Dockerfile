# The SDK harness image for every remote runner (Flink, Spark, Dataflow): Beam's own Python 3.11
# image with this repository installed, so workers import `coexarchive` and `pipelines` and install
# nothing at start. The stock image alone fails every step with "No module named 'pipelines'".
#   docker build -f infra/runners/sdk.Dockerfile -t REGISTRY/coexarchive/ingest:VERSION .
# Not built on this project's CI machines (no Docker there); the same interpreter and packages
# ran the harnesses of the portable-runner test (tests/integration/test_portable_runner.py).
FROM apache/beam_python3.11_sdk:2.77.0
WORKDIR /opt/coexarchive
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src src
COPY pipelines pipelines
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
