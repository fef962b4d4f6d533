# AI Orchestrator: the bot as a container image.
#
#   docker build -t ai-orchestrator .
#   docker run --rm -it --env-file .env -v orchestrator-data:/data ai-orchestrator doctor
#   docker run -d --env-file .env -v orchestrator-data:/data ai-orchestrator        # run all
#
# compose.yaml runs it beside Ollama, a Chroma server and PostgreSQL; docs/deploy.md says
# what the tools can see from inside a container and how to let the sandbox work.

# The Debian release is pinned: bubblewrap and the read-only tools come from its packages.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the package and its dependencies in a venv ----------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/orchestrator
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bot ./bot
COPY notebooks ./notebooks
# A server needs PostgreSQL's driver (the `postgres` extra); everything else is in the base dependencies.
RUN /opt/orchestrator/bin/pip install ".[postgres]" \
    && /opt/orchestrator/bin/orchestrator --help >/dev/null

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# bubblewrap: the sandbox free commands run in (it works only where the container may
#   create user namespaces: docs/deploy.md, "The sandbox in a container");
# procps, iproute2: ps, free, uptime, ss, ip for the read-only tools;
# git, openssh-client: the git tools, and remote hosts over ssh (docker[ssh] rides on ssh too);
# tini: PID 1 that reaps what commands leave behind and passes SIGTERM to the bot.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bubblewrap ca-certificates git iproute2 openssh-client procps tini \
    && rm -rf /var/lib/apt/lists/*

# A dedicated, unprivileged user; fixed ids so a bind-mounted data directory can be chowned to them.
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" orchestrator \
    && useradd --system --uid "${UID}" --gid orchestrator --home-dir /home/orchestrator --create-home \
        --shell /usr/sbin/nologin orchestrator \
    && install -d -o orchestrator -g orchestrator -m 0750 /data /data/workspace

COPY --from=build /opt/orchestrator /opt/orchestrator

# ORCHESTRATOR_METRICS_PORT: the bot's HTTP endpoint (/healthz, /metrics), bound to 127.0.0.1
# inside the container, which is where the healthcheck below asks.
ENV PATH=/opt/orchestrator/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    ORCHESTRATOR_DATA_DIR=/data \
    ORCHESTRATOR_METRICS_PORT=9464 \
    MPLCONFIGDIR=/tmp/matplotlib \
    IPYTHONDIR=/tmp/ipython

USER orchestrator
WORKDIR /data
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['ORCHESTRATOR_METRICS_PORT'], timeout=4)"]

# Stops with SIGTERM: runs in flight are told in their threads (8 s grace; docker stop waits 10).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "orchestrator"]
CMD ["run", "all"]
