# forwarden: a small, non-root image: one static binary (musl), CA certificates and the
# `nonroot` user; no shell, no C library.
#   docker build -t forwarden .
#   docker run -p 4180:4180 -v $PWD/deploy/config:/etc/forwarden:ro \
#     -e FORWARDEN_COOKIE_SECRET=... forwarden
# /etc/forwarden/forwarden.yaml must listen on 0.0.0.0:4180 inside the container.
# The build stage runs CI's checks that need no proxy or browser (fmt, clippy -D warnings, the
# unit tests), then builds the static binary for this machine's architecture.
# The base images are build arguments (scripts/image builds with local ones).
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot
FROM ${BUILD_IMAGE} AS build
# musl-gcc compiles the C parts (ring, mimalloc) of the static binary.
# hadolint ignore=DL3008
RUN command -v musl-gcc >/dev/null \
 || { apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*; }
RUN rustup component add rustfmt clippy && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
# The allocator's build setting (.cargo/config.toml: arenas committed as used).
COPY .cargo .cargo
COPY src src
# check reads the identity headers of the shipped nginx include (compiled in).
COPY nginx/forwarden-location.conf nginx/forwarden-location.conf
COPY benches benches
COPY examples examples
COPY tests/it tests/it
# The image's binary without debug information (CI's release builds keep line tables).
ENV CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo fmt --all --check \
 && cargo clippy --all-targets --locked -- -D warnings \
 && cargo test --locked --lib \
 && cargo build --release --locked --bin forwarden --target "$(uname -m)-unknown-linux-musl" \
 && cp "target/$(uname -m)-unknown-linux-musl/release/forwarden" /forwarden

FROM ${RUNTIME_IMAGE}
COPY --from=build /forwarden /usr/local/bin/forwarden
# distroless's nonroot user (scripts/image's runtime base has it too).
USER 65532:65532
ENV FORWARDEN_CONFIG=/etc/forwarden/forwarden.yaml
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/usr/local/bin/forwarden", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/forwarden"]
CMD ["serve"]
