# syntax=docker/dockerfile:1.7
# Slate's container image (ghcr.io/slate-film/slate), as k8s/base/slate.yaml runs it.
#   docker build -t ghcr.io/slate-film/slate:0.1.0 .
# Builds the same way as scripts/setup + scripts/build-site + cargo on a developer machine.
# In the image Slate expects an external PostgreSQL (DATABASE_URL): it carries no server.

# The toolchain of rust-toolchain.toml (1.95.0, with the wasm32 target).
FROM rust:1.95.0-bookworm AS toolchain
WORKDIR /src
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustup target list --installed | grep -qx wasm32-unknown-unknown

# The wasm-bindgen library version pinned by Cargo.lock, alone in a file so that the CLI
# below is rebuilt only when that version changes, not on every lockfile change.
FROM toolchain AS wasm-bindgen-version
COPY Cargo.lock ./
RUN awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock > /wasm-bindgen-version \
 && test -s /wasm-bindgen-version

# wasm-bindgen's CLI must match the library exactly (from crates.io, locked).
# wasm-opt is not installed: scripts/build-site only uses the npm binaryen that
# scripts/setup installs (Debian's binaryen is too old for today's rustc output), so the
# wasm is built unoptimised by wasm-opt; it works, it is only larger.
FROM toolchain AS builder
COPY --from=wasm-bindgen-version /wasm-bindgen-version /wasm-bindgen-version
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo install wasm-bindgen-cli --version "$(cat /wasm-bindgen-version)" --locked
COPY . .
# The site (target/site: pkg/ with the wasm, its JS glue, CSS, static files), then the
# server. target/ is a cache mount, so the results are copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo fetch --locked \
 && scripts/build-site release \
 && cargo build --release --locked -p server \
 && mkdir -p /out \
 && cp target/release/slate /out/slate \
 && cp -r target/site /out/site

FROM debian:bookworm-slim AS runtime
# ffmpeg/ffprobe: media probing, thumbnails and proxies; ca-certificates: TLS to
# PostgreSQL, object storage, the Kubernetes API and the Colab endpoint.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 slate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/slate --no-create-home --shell /usr/sbin/nologin slate \
 && mkdir -p /var/lib/slate /data/assets \
 && chown 10001:10001 /var/lib/slate /data/assets
COPY --from=builder /out/slate /usr/local/bin/slate
COPY --from=builder /out/site /usr/share/slate/site
ENV SLATE_SITE_DIR=/usr/share/slate/site \
    SLATE_LISTEN=0.0.0.0:3000 \
    SLATE_DATA_DIR=/var/lib/slate
USER 10001:10001
WORKDIR /var/lib/slate
EXPOSE 3000
ENTRYPOINT ["slate"]
CMD ["serve"]
