# syntax=docker/dockerfile:1
# The Midge broker as a container: built with the official Rust image from
# the locked dependencies, run as a non-root user on Debian slim.
#
#   docker build -t midge .
#   docker run -d --name midge -p 1883:1883 -p 8883:8883 -v midge-data:/data midge
#
# The baked configuration (docker/broker.toml, at /etc/midge/broker.toml)
# listens on 1883, on 8883 with TLS when /etc/midge/certs/server.crt and
# server.key are mounted, and serves /metrics and /health on 9100.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: manifests, lock file and
# placeholder sources. It is rebuilt only when a manifest or Cargo.lock
# changes, not when the sources do.
COPY Cargo.toml Cargo.lock ./
COPY protocol/Cargo.toml protocol/
COPY broker/Cargo.toml broker/
COPY client/Cargo.toml client/
COPY docker/stub-workspace.sh docker/
RUN sh docker/stub-workspace.sh \
    && cargo build --release --locked -p midge-broker
# Then the sources. Touched, they are newer than the placeholders, so cargo
# rebuilds the workspace's own crates (and only those).
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p midge-broker \
    && strip --strip-debug target/release/midge

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 midge \
    && useradd --system --uid 10001 --gid midge --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin midge \
    && mkdir -p /data /etc/midge/certs \
    && chown midge:midge /data
COPY --from=build /src/target/release/midge /usr/local/bin/midge
COPY docker/broker.toml /etc/midge/broker.toml
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 1883 8883 9100
# CONNECT and PINGREQ on the first plain listener of the same configuration.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["midge", "health", "--config", "/etc/midge/broker.toml"]
CMD ["midge", "--config", "/etc/midge/broker.toml"]
