# Build stage: compile maestro.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY runtime ./runtime
RUN cargo build --release --locked --bin maestro

# Runtime stage: the binary, the CPython WASI runtime fetched with pip, compiled on first start.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/maestro maestro
COPY --from=build /src/target/release/maestro /usr/local/bin/maestro
COPY runtime/fetch.sh /usr/local/share/maestro/fetch.sh
# Fetch (and sha256-check) the runtime at build time so the container needs no index at run time.
RUN bash /usr/local/share/maestro/fetch.sh /opt/maestro/runtime \
 && mkdir -p /opt/maestro/runtime/cache /opt/maestro/runtime/root \
 && chown -R maestro /opt/maestro/runtime
USER maestro
WORKDIR /var/lib/maestro
ENV MAESTRO_BIND=0.0.0.0:8000 \
    MAESTRO_DATA_DIR=/var/lib/maestro/data \
    MAESTRO_RUNTIME_DIR=/opt/maestro/runtime
EXPOSE 8000
# The first start compiles the runtime (about 2 minutes, 2.5 GB); mount
# /opt/maestro/runtime/cache as a volume to keep it, or run `maestro prepare` in a derived image.
CMD ["maestro", "serve"]
