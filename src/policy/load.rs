//! Loading: policy files to a [`PolicySet`], with every problem of every file at once.
//!
//! A file is a list of routes, or a mapping with `routes` and named `policies`. Named policies
//! are read first from every file, so any route may use any of them; then each route is
//! compiled on its own (`compile`), so one bad route does not hide the problems of the next.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::ppl;
use super::{PolicySet, compile, route};
use crate::diag::{Diagnostic, has_errors};
use crate::yaml::{self, Node, Problem, Value};

/// The policy file size limit when none is configured (`limits.max_policy_bytes`).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// Bytes of the size limit per YAML value allowed: a route takes about 70 bytes and 7 values.
pub(crate) const BYTES_PER_NODE: usize = 8;

/// A fingerprint of the files as the file system describes them (size, modification and change
/// times, inode; a missing file counts as a change): cheap enough to take every second
/// without reading the files, and it follows a Kubernetes ConfigMap's symlink swap.
pub fn fingerprint(files: &[std::path::PathBuf]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::metadata(f) {
            Ok(m) => {
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    (m.ino(), m.dev(), m.ctime(), m.ctime_nsec()).hash(&mut h);
                }
            }
            Err(e) => e.kind().to_string().hash(&mut h),
        }
    }
    h.finish()
}

/// A file's bytes, refused past `max` without reading further.
fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read policy file: {e}"))?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read policy file: {e}"))?;
    if bytes.len() > max {
        return Err(format!(
            "the policy file is larger than limits.max_policy_bytes ({max} bytes)"
        ));
    }
    Ok(bytes)
}

impl PolicySet {
    /// Read and load policy files of at most `max_bytes` each (`limits.max_policy_bytes`);
    /// every problem of every file is returned at once.
    pub fn load(files: &[impl AsRef<Path>], max_bytes: usize) -> Result<Self, Vec<Diagnostic>> {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in files {
            let name = f.as_ref().display().to_string();
            match read_limited(f.as_ref(), max_bytes) {
                Ok(bytes) => match yaml::text(bytes) {
                    Ok(text) => sources.push((name, text)),
                    Err(p) => diags.push(Diagnostic::error(&name, p)),
                },
                Err(e) => diags.push(Diagnostic::file_error(&name, e)),
            }
        }
        match Self::from_sources_limited(&sources, max_bytes) {
            Ok(set) if diags.is_empty() => Ok(set),
            Ok(_) => Err(diags),
            Err(mut more) => {
                diags.append(&mut more);
                Err(diags)
            }
        }
    }

    /// Load from `(file name, contents)` pairs, with the default size limit.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, Vec<Diagnostic>> {
        Self::from_sources_limited(sources, DEFAULT_MAX_BYTES)
    }

    /// Load from `(file name, contents)` pairs of at most `max_bytes` each: a file may hold at
    /// most one YAML value per `BYTES_PER_NODE` bytes of that limit.
    pub fn from_sources_limited(
        sources: &[(String, String)],
        max_bytes: usize,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut trees = Vec::new();
        let mut empty_files = Vec::new();
        let max_nodes = (max_bytes / BYTES_PER_NODE).max(1000);
        for (name, text) in sources {
            if text.trim().is_empty() {
                empty_files.push(name.clone());
            }
            match yaml::parse_limited(text, max_nodes, "a policy file (limits.max_policy_bytes / 8)") {
                Ok(node) => trees.push((Arc::<str>::from(name.as_str()), node)),
                Err(p) => diags.push(Diagnostic::error(name, p)),
            }
        }
        // Named policies first, from every file, so any route may use any of them.
        let mut named: compile::Named = HashMap::new();
        let mut route_nodes: Vec<(&Arc<str>, &Node)> = Vec::new();
        for (file, tree) in &trees {
            let mut problems = Vec::new();
            match &tree.value {
                Value::Null => {}
                Value::Seq(items) => route_nodes.extend(items.iter().map(|n| (file, n))),
                Value::Map(entries) => {
                    for (k, v) in entries {
                        match (k.name.as_str(), &v.value) {
                            ("routes", Value::Seq(items)) => {
                                route_nodes.extend(items.iter().map(|n| (file, n)))
                            }
                            ("routes", Value::Map(m)) => route_nodes.extend(m.iter().map(|(_, n)| (file, n))),
                            ("routes", Value::Null) => {}
                            ("routes", _) => problems.push(Problem::new(v.pos, "`routes` must be a list of routes")),
                            ("policies", Value::Map(m)) => {
                                for (pk, pv) in m {
                                    let mut p = ppl::Parser::new(file.clone());
                                    let rules = p.policy(pv);
                                    problems.append(&mut p.problems);
                                    let here = format!("{file}:{}", pk.pos.line);
                                    if let Some((_, first)) = named.get(&pk.name) {
                                        problems.push(Problem::new(pk.pos, format!("policy `{}` is already defined at {first}", pk.name)));
                                    } else {
                                        named.insert(pk.name.clone(), (rules, here));
                                    }
                                }
                            }
                            ("policies", Value::Null) => {}
                            ("policies", _) => problems.push(Problem::new(v.pos, "`policies` must be a mapping of names to policies")),
                            (other, _) => problems.push(Problem::new(k.pos, format!(
                                "unknown top-level key `{other}`: a policy file is a list of routes, or a mapping with `routes` and `policies`"
                            ))),
                        }
                    }
                }
                _ => problems.push(Problem::new(
                    tree.pos,
                    "a policy file must be a list of routes or a mapping with `routes`",
                )),
            }
            diags.extend(problems.into_iter().map(|p| Diagnostic::error(file, p)));
        }
        let mut routes = Vec::new();
        let mut ignored: compile::Ignored<'_> = BTreeMap::new();
        for (file, node) in &route_nodes {
            let mut problems = Vec::new();
            if let Some(route) = compile::route(file, node, &named, &mut problems, &mut ignored) {
                routes.push(route);
            }
            diags.extend(problems.into_iter().map(|p| Diagnostic::error(file, p)));
        }
        if has_errors(&diags) {
            diags.sort();
            return Err(diags);
        }
        let notes = ignored
            .into_iter()
            .map(|((file, field), (pos, n))| {
                let routes = if n == 1 {
                    "1 route".to_string()
                } else {
                    format!("{n} routes")
                };
                let why = if field == "to" {
                    "the proxy forwards the traffic, forwarden only decides"
                } else {
                    "it is a Pomerium proxy setting; configure it in your proxy"
                };
                Diagnostic::note(
                    file,
                    Some(pos),
                    format!("`{field}` is accepted and ignored ({routes}): {why}"),
                )
            })
            .collect();
        let index = route::Index::build(&routes);
        let named: HashMap<String, Vec<ppl::Rule>> =
            named.into_iter().map(|(k, (rules, _))| (k, rules)).collect();
        let mut groups = std::collections::HashSet::new();
        for rule in routes
            .iter()
            .flat_map(|r| &r.rules)
            .chain(named.values().flatten())
        {
            rule.expr.groups_named(&mut groups);
        }
        let limits_sign_in = routes.iter().any(|r| !r.sign_in.is_default());
        Ok(PolicySet {
            limits_sign_in,
            routes,
            index,
            named,
            groups,
            notes,
            empty_files,
        })
    }
}
