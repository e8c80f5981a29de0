# forwarden: a small, non-root image.
#   docker build -t forwarden .
#   docker run -p 4180:4180 -v $PWD/deploy:/etc/forwarden:ro \
#     -e FORWARDEN_COOKIE_SECRET=... forwarden
# /etc/forwarden/forwarden.yaml must listen on 0.0.0.0:4180 inside the container.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin forwarden

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/forwarden /usr/local/bin/forwarden
USER nonroot:nonroot
ENV FORWARDEN_CONFIG=/etc/forwarden/forwarden.yaml
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/usr/local/bin/forwarden", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/forwarden"]
CMD ["serve"]
