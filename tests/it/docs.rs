//! No untested snippet in the docs: every configuration block in README.md and docs/*.md names
//! the file it comes from (`<!-- tested: path -->` on the line before the fence), its lines
//! appear in that file in order (an excerpt may leave lines out, never change them), and that
//! file is one the integration tests load or run.

use std::path::Path;

use crate::util::*;

/// Fence languages that are configuration (commands and output are not).
const CONFIG: [&str; 9] = [
    "yaml",
    "nginx",
    "caddyfile",
    "haproxy",
    "lua",
    "dockerfile",
    "json",
    "toml",
    "ini",
];

struct Block {
    doc: String,
    line: usize,
    lang: String,
    tested: Option<String>,
    body: Vec<String>,
}

fn blocks(doc: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(doc).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let tested = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- tested: "))
            .and_then(|r| r.strip_suffix(" -->"))
            .map(str::to_string);
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push(lines[i].to_string());
            i += 1;
        }
        out.push(Block {
            doc: doc.strip_prefix(repo()).unwrap_or(doc).display().to_string(),
            line: start + 1,
            lang: lang.trim().to_ascii_lowercase(),
            tested,
            body,
        });
        i += 1;
    }
    out
}

/// Whether `excerpt`'s lines occur in `file`, in order (blank lines and `…` elisions aside).
fn is_excerpt(excerpt: &[String], file: &str) -> Result<(), String> {
    let file: Vec<&str> = file.lines().map(str::trim).collect();
    let mut at = 0;
    for line in excerpt.iter().map(|l| l.trim()) {
        if line.is_empty() || line == "…" || line == "# …" {
            continue;
        }
        match file[at..].iter().position(|f| *f == line) {
            Some(p) => at += p + 1,
            None => return Err(line.to_string()),
        }
    }
    Ok(())
}

/// The test sources (and their helpers' folder), where each tested file must be named.
fn test_sources() -> String {
    let mut all = String::new();
    let mut dirs = vec![repo().join("tests/it")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                all.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    all
}

#[test]
fn every_configuration_in_the_docs_is_a_tested_file() {
    let mut docs = vec![repo().join("README.md")];
    let mut guides: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    guides.sort();
    assert!(guides.len() >= 8, "the guides are in docs/: {guides:?}");
    docs.extend(guides);
    let sources = test_sources();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        for b in blocks(doc) {
            if !CONFIG.contains(&b.lang.as_str()) {
                continue;
            }
            let Some(path) = &b.tested else {
                problems.push(format!(
                    "{}:{}: a {} block without `<!-- tested: <file> -->` before it",
                    b.doc, b.line, b.lang
                ));
                continue;
            };
            let Ok(file) = std::fs::read_to_string(repo().join(path)) else {
                problems.push(format!("{}:{}: {path} does not exist", b.doc, b.line));
                continue;
            };
            if let Err(line) = is_excerpt(&b.body, &file) {
                problems.push(format!(
                    "{}:{}: this line is not in {path} (in this order): {line}",
                    b.doc, b.line
                ));
            }
            let name = Path::new(path).file_name().unwrap().to_str().unwrap();
            if !sources.contains(path.as_str()) && !sources.contains(&format!("\"{name}\"")) {
                problems.push(format!("{}:{}: no integration test names {path}", b.doc, b.line));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 15, "only {checked} configuration blocks found");
}

#[test]
fn excerpts_may_leave_lines_out_but_not_change_them() {
    let file = "a: 1\nb: 2\nc:\n  d: 4\n";
    assert!(is_excerpt(&["a: 1".into(), "…".into(), "  d: 4".into()], file).is_ok());
    assert!(is_excerpt(&["d: 4".into(), "a: 1".into()], file).is_err());
    assert!(is_excerpt(&["a: 2".into()], file).is_err());
}

/// Every `src/…` or `tests/…` path ARCHITECTURE.md names, and every `module::function` it
/// points at, exists: the map cannot drift from the code.
#[test]
fn architecture_names_only_files_that_exist() {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for word in text.split(|c: char| c == '`' || c.is_whitespace() || c == '(' || c == ')' || c == ',') {
        let word = word.trim_end_matches(['.', ':', ';']);
        if !(word.starts_with("src/") || word.starts_with("tests/")) {
            continue;
        }
        named += 1;
        if !repo().join(word).exists() {
            missing.push(word.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
    assert!(named >= 25, "only {named} paths found in ARCHITECTURE.md");
    // Every top-level module of the library is on the map.
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).unwrap();
    for module in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let module = module.trim_end_matches(';');
        let file = format!("src/{module}.rs");
        let dir = format!("src/{module}/");
        assert!(
            text.contains(&file) || text.contains(&dir),
            "ARCHITECTURE.md does not place the module `{module}`"
        );
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "src/lib.rs's map misses `{module}`"
        );
    }
}

/// The layer rule of ARCHITECTURE.md: the pure core imports nothing of the shell.
#[test]
fn core_modules_import_no_shell() {
    let core = [
        "src/oidc",
        "src/policy",
        "src/request.rs",
        "src/session.rs",
        "src/jwt.rs",
        "src/identity.rs",
        "src/yaml.rs",
        "src/diag.rs",
        "src/clock.rs",
        "src/secret.rs",
        "src/handoff.rs",
        // The store's pure part; its Redis transport (src/store/redis.rs) is shell.
        "src/store/mod.rs",
    ];
    let mut files = Vec::new();
    for c in core {
        let p = repo().join(c);
        if p.is_dir() {
            let mut stack = vec![p];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push(p);
                    }
                }
            }
        } else {
            files.push(p);
        }
    }
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for shell in ["crate::config", "crate::http", "crate::server", "axum::"] {
            if text.contains(shell) {
                bad.push(format!("{} uses {shell}", f.display()));
            }
        }
        // Only the transport module makes outbound calls or runs on tokio.
        if !f.to_string_lossy().contains("oidc/transport/")
            && (text.contains("reqwest::") || text.contains("tokio::") || text.contains("redis::"))
        {
            bad.push(format!("{} uses reqwest, tokio or redis", f.display()));
        }
    }
    assert!(files.len() >= 15, "{files:?}");
    assert!(bad.is_empty(), "{bad:?}");
}
