# The foveal HTTP service on the CPU: `foveal serve` with the shipped models baked into the image.
#
#   podman build --format docker -t foveal-serve .   (docker format keeps HEALTHCHECK; or docker build)
#   podman run --rm --stop-timeout 35 -p 8080:8080 foveal-serve   (stop waits 10 s by default; a drain takes up to 30)
#
# Behind a proxy that re-signs TLS, give pip its CA:  podman build --secret id=pip_ca,src=/path/to/ca.pem .
# docs/SERVING.md: deployment, what was verified on which machine.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake \
 && (python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))" \
     || apt-get install -y --no-install-recommends python3-dev) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml CMakeLists.txt README.md LICENSE ./
COPY csrc csrc
COPY python python
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps -w /wheels .

FROM ${BASE}
RUN useradd --system --uid 10001 --create-home --home-dir /home/foveal --shell /usr/sbin/nologin foveal
COPY --from=build /wheels /wheels
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/foveal \
 && /opt/foveal/bin/pip install --no-cache-dir "$(ls /wheels/foveal-*.whl)[serve]" \
 && rm -rf /wheels \
 # The model ships inside the package: fail the build now if it cannot load, not at the first request.
 && /opt/foveal/bin/python -c "import foveal; print(foveal.Engine())"
ENV PATH=/opt/foveal/bin:$PATH PYTHONUNBUFFERED=1
USER foveal
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"]
# In a container the service must listen beyond loopback; publish the port only where it is wanted.
ENTRYPOINT ["foveal", "serve", "--host", "0.0.0.0", "--port", "8080"]
