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

impl PolicySet {
    /// Read and load policy files; every problem of every file is returned at once.
    pub fn load(files: &[impl AsRef<Path>]) -> Result<Self, Vec<Diagnostic>> {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in files {
            let name = f.as_ref().display().to_string();
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((name, text)),
                Err(e) => diags.push(Diagnostic::file_error(
                    &name,
                    format!("cannot read policy file: {e}"),
                )),
            }
        }
        match Self::from_sources(&sources) {
            Ok(set) if diags.is_empty() => Ok(set),
            Ok(_) => Err(diags),
            Err(mut more) => {
                diags.append(&mut more);
                Err(diags)
            }
        }
    }

    /// Load from `(file name, contents)` pairs.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut trees = Vec::new();
        for (name, text) in sources {
            match yaml::parse(text) {
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
        Ok(PolicySet {
            routes,
            index,
            named,
            groups,
            notes,
        })
    }
}
