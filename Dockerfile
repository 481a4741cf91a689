# euid-map in a container: build with the locked dependencies, run as a non-root user in a
# slim image that holds only the binary, the nightly script and CA certificates.
#   docker build -t euid-map:0.1.0 .
#   docker run --rm euid-map:0.1.0 --version
# The build stage runs the same command CI runs (`cargo build --release --locked`); the
# image itself is not built in CI (no registry is reachable there). See README, "Install".

FROM rust:1.95-slim-bookworm AS build
# .git is not sent to the builder: pass the commit for --version
# (docker build --build-arg EUID_MAP_COMMIT=$(git rev-parse --short=12 HEAD) .).
ARG EUID_MAP_COMMIT=
ENV EUID_MAP_COMMIT=$EUID_MAP_COMMIT
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
COPY fixtures fixtures
COPY vendor vendor
# The workspace's other members (the glibc arena cap the command uses; the Python module's
# crate, which cargo must see to load the workspace but does not build here).
COPY malloc malloc
COPY python/Cargo.toml python/Cargo.toml
COPY python/src python/src
RUN cargo build --release --locked --bin euid-map \
 && strip target/release/euid-map

FROM debian:bookworm-slim
# The operator, Pushgateway and object stores are reached over HTTPS with the system's roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --gid 0 --home-dir /data --no-create-home euid
COPY --from=build /src/target/release/euid-map /usr/local/bin/euid-map
COPY scripts/nightly.sh /usr/local/bin/euid-map-nightly
USER 10001
WORKDIR /data
ENTRYPOINT ["euid-map"]
CMD ["--help"]
