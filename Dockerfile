# GridHub's image: every hub service of docker-compose.yml (api, gateway, worker, store, detect and the
# one-shot db upgrade and broker files) is this image with its own `gridhub` command.
#
#   docker build -t gridhub .
#   docker run --rm gridhub --help

# Build: a virtual environment with GridHub from this source tree. Every dependency ships manylinux wheels
# (opencv-python-headless needs no system libraries), so no compiler is installed.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/gridhub
COPY . /src
# psycopg is the PostgreSQL driver of database.url `postgresql+psycopg://...`; pyproject.toml lists it
# only among the test dependencies.
RUN /opt/gridhub/bin/pip install /src "psycopg[binary]>=3.1,<4"

# Run: the same Python, the virtual environment, a user of its own.
FROM python:3.11-slim
ENV PATH=/opt/gridhub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRIDHUB_STATE_DIR=/var/lib/gridhub
# The state directory and the mount points of docker-compose.yml's volumes belong to the service user, so
# that a new named volume mounted there starts out writable by it. mqtt/ is world-readable (its files are
# not: 0640) so that Mosquitto's user can enter it where the volume is mounted in its own container.
RUN groupadd --system --gid 10001 gridhub \
 && useradd --system --uid 10001 --gid gridhub --home-dir /var/lib/gridhub --no-create-home \
        --shell /usr/sbin/nologin gridhub \
 && install -d -o gridhub -g gridhub -m 0750 /var/lib/gridhub /var/lib/gridhub/evidence \
        /var/lib/gridhub/gateway-slots \
 && install -d -o gridhub -g gridhub -m 0755 /var/lib/gridhub/mqtt
COPY --from=build /opt/gridhub /opt/gridhub
USER gridhub
WORKDIR /var/lib/gridhub
EXPOSE 8000
ENTRYPOINT ["gridhub"]
