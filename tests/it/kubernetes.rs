//! The Kubernetes manifests: rendered by kubectl's kustomize, then every object validated
//! against its published schema (`tests/k8s/validate.py`: the Kubernetes schemas for built-in
//! kinds, the vendored CRDs of Gateway API, Envoy Gateway, Istio and Traefik, and Istio's mesh
//! configuration proto), and the configuration they mount is one forwarden accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

const KUBERNETES: &str = "1.30.0";

fn render() -> Option<String> {
    let kubectl = require("kubectl")?;
    let out = Command::new(kubectl)
        .args(["kustomize"])
        .arg(repo().join("deploy/kubernetes"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

fn validate(files: &[PathBuf]) -> Option<(bool, String)> {
    require("kubernetes-validate")?;
    let python = repo().join("target/tools-venv/bin/python");
    let out = Command::new(python)
        .arg(repo().join("tests/k8s/validate.py"))
        .arg(KUBERNETES)
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}

fn gateways() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes/gateways"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_render_and_validate_against_their_schemas() {
    let Some(rendered) = render() else { return };
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let mut files = vec![file];
    files.extend(gateways());
    let Some((ok, out)) = validate(&files) else { return };
    assert!(ok, "{out}");
    for object in [
        "Deployment/forwarden: valid",
        "Service/forwarden: valid",
        "PodDisruptionBudget/forwarden: valid",
        "SecurityPolicy/forwarden: valid (its CRD)",
        "HTTPRoute/forwarden-sign-in: valid (its CRD)",
        "ReferenceGrant/apps-to-forwarden: valid (its CRD)",
        "AuthorizationPolicy/forwarden: valid (its CRD)",
        "ConfigMap/istio: valid (Kubernetes 1.30.0 and istio/api's MeshConfig)",
        "Middleware/forwarden-grafana: valid (its CRD)",
        "Ingress/grafana: valid",
    ] {
        assert!(out.contains(object), "{object} missing:\n{out}");
    }
}

/// The validation is not a rubber stamp: a misspelled field in each kind of manifest fails.
#[test]
fn a_misspelled_field_in_a_manifest_fails_validation() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut files = Vec::new();
    for (file, from, to) in [
        ("envoy-gateway.yaml", "grpc:", "grpcc:"),
        ("istio.yaml", "envoyExtAuthzGrpc:", "envoyExtAuthzGrpcc:"),
        ("istio.yaml", "action: CUSTOM", "actions: CUSTOM"),
        (
            "traefik.yaml",
            "authResponseHeadersRegex",
            "authResponseHeaderRegex",
        ),
        ("ingress-nginx.yaml", "pathType: Prefix", "pathtype: Prefix"),
    ] {
        let text = std::fs::read_to_string(repo().join("deploy/kubernetes/gateways").join(file)).unwrap();
        assert!(text.contains(from), "{file} no longer has {from}");
        let bad = dir
            .path()
            .join(format!("{}-{to}.yaml", file.trim_end_matches(".yaml")));
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        files.push(bad);
    }
    for bad in &files {
        let Some((ok, out)) = validate(std::slice::from_ref(bad)) else {
            return;
        };
        assert!(!ok, "{} passed:\n{out}", bad.display());
    }
}

/// What the Deployment mounts is a configuration forwarden accepts, with its policies where the
/// configuration says, and the probes on forwarden's health endpoints.
#[test]
fn kubernetes_config_and_mounts_fit_together() {
    let Some(rendered) = render() else { return };
    let docs: Vec<serde_json::Value> = rendered
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    };
    let config = find("ConfigMap", "forwarden-config")["data"]["forwarden.yaml"]
        .as_str()
        .unwrap()
        .replace("<tenant-id>", IDP_TENANT)
        .replace("<application-client-id>", "11111111-2222-3333-4444-555555555555");
    let policies = find("ConfigMap", "forwarden-policies")["data"]["apps.yaml"]
        .as_str()
        .unwrap();
    let container = &find("Deployment", "forwarden")["spec"]["template"]["spec"]["containers"][0];
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts.iter().find(|m| m["name"] == name).unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Lay the mounts out as the pod sees them, under a temporary root.
    let root = tempfile::TempDir::new().unwrap();
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    let config_path = at(&mount("config"));
    std::fs::create_dir_all(config_path.parent().unwrap()).unwrap();
    std::fs::write(&config_path, config).unwrap();
    let policy_dir = at(&mount("policies"));
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("apps.yaml"), policies).unwrap();
    let env = |k: &str| match k {
        "FORWARDEN_COOKIE_SECRET" => Some(SECRET.to_string()),
        "FORWARDEN_CLIENT_SECRET" => Some("client-secret".to_string()),
        _ => None,
    };
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["serve", "--config", mount("config").as_str()]);
    let cfg = forwarden::config::Config::load(Path::new(&config_path), &env).unwrap();
    assert_eq!(cfg.policy_files, [policy_dir.join("apps.yaml")]);
    assert_eq!(cfg.ext_authz_listen.unwrap().port(), 4181);
    let set = forwarden::policy::PolicySet::load(&cfg.policy_files, cfg.limits.max_policy_bytes).unwrap();
    assert_eq!(set.routes().len(), 3);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
}
