# forwarden: a small, non-root image (distroless, no shell).
#   docker build -t forwarden .
#   docker run -p 4180:4180 -v $PWD/deploy/config:/etc/forwarden:ro \
#     -e FORWARDEN_COOKIE_SECRET=... forwarden
# /etc/forwarden/forwarden.yaml must listen on 0.0.0.0:4180 inside the container.
# The build stage runs CI's checks that need no proxy or browser (fmt, clippy -D warnings, the
# unit tests) before the same `cargo build --release --locked` CI's benchmarks use.
# The base images are build arguments (scripts/image builds with local ones made by debootstrap).
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BUILD_IMAGE} AS build
RUN rustup component add rustfmt clippy
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src src
# check reads the identity headers of the shipped nginx include (compiled in).
COPY nginx/forwarden-location.conf nginx/forwarden-location.conf
COPY benches benches
COPY examples examples
COPY tests/it tests/it
RUN cargo fmt --all --check \
 && cargo clippy --all-targets --locked -- -D warnings \
 && cargo test --locked --lib \
 && cargo build --release --locked --bin forwarden

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/forwarden /usr/local/bin/forwarden
# distroless's nonroot user (scripts/image's runtime base has it too).
USER 65532:65532
ENV FORWARDEN_CONFIG=/etc/forwarden/forwarden.yaml
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/usr/local/bin/forwarden", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/forwarden"]
CMD ["serve"]
