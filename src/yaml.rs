//! YAML with positions: the raw layer under configuration and policy files.
//!
//! A file is first read into a [`Node`] tree in which every value remembers its line and
//! column. Typed structs (with `deny_unknown_fields`) are then deserialized from subtrees one
//! at a time, so one bad route does not hide the problems of the next, and every serde error is
//! mapped back to the position of the key or value it is about. This is what lets `check`
//! report every problem of a file at once, each as `file:line:column: message`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A line and column, both 1-based, as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// A problem at `pos`.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// The shapes a YAML value can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, keys in file order (keys are scalars, kept as text with their position).
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Where the key is.
    pub pos: Pos,
    /// The key as text.
    pub name: String,
}

impl Node {
    /// The mapping entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The entry `name` of a mapping.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    /// The key `name` of a mapping.
    pub fn key(&self, name: &str) -> Option<&Key> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, _)| k)
    }

    /// The scalar as text (strings, numbers and booleans), if it is one.
    pub fn as_scalar(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The plain JSON value, without positions.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Deserialize this subtree into `T`; a failure is reported at the position of the key or
    /// value it is about.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        let json = self.to_json();
        serde_path_to_error::deserialize::<_, T>(json).map_err(|e| self.problem(&e))
    }

    /// [`Node::typed`], reporting every structural problem at once (unknown keys, values of the
    /// wrong type): after each one, the offending key or value is set aside and the rest is read
    /// again, at most [`MAX_PROBLEMS`] times.
    pub fn typed_all<T: DeserializeOwned>(&self) -> Result<T, Vec<Problem>> {
        match self.typed_partial() {
            (Some(v), problems) if problems.is_empty() => Ok(v),
            (_, problems) => Err(problems),
        }
    }

    /// [`Node::typed_all`], and the value read once every structural problem was set aside
    /// (`None` when a field that must be there is what was set aside), so that the checks of
    /// the values that are well-formed can run in the same pass.
    pub fn typed_partial<T: DeserializeOwned>(&self) -> (Option<T>, Vec<Problem>) {
        let mut json = self.to_json();
        let mut problems: Vec<Problem> = Vec::new();
        for _ in 0..MAX_PROBLEMS {
            let e = match serde_path_to_error::deserialize::<_, T>(json.clone()) {
                Ok(v) => return (Some(v), problems),
                Err(e) => e,
            };
            let problem = self.problem(&e);
            let message = e.inner().to_string();
            // A missing field is only ever a consequence of a value set aside, or the end.
            let consequence = message.starts_with("missing field");
            if !consequence && !problems.contains(&problem) {
                problems.push(problem);
            }
            if consequence || !set_aside(&mut json, e.path(), &message) {
                break;
            }
        }
        if problems.is_empty() {
            // Only a field that must be there is missing: report that one.
            return match self.typed() {
                Ok(v) => (Some(v), problems),
                Err(p) => (None, vec![p]),
            };
        }
        (None, problems)
    }

    /// The problem a deserialization error is, at the position of the key or value it is about.
    fn problem(&self, e: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
        {
            let message = e.inner().to_string();
            let mut node = self;
            let mut pos = self.pos;
            for seg in e.path().iter() {
                use serde_path_to_error::Segment;
                let next = match seg {
                    Segment::Map { key } => {
                        if let Some(k) = node.key(key) {
                            pos = k.pos;
                        }
                        node.get(key)
                    }
                    Segment::Seq { index } => match &node.value {
                        Value::Seq(items) => items.get(*index),
                        _ => None,
                    },
                    _ => None,
                };
                match next {
                    Some(n) => {
                        node = n;
                        if !matches!(seg, Segment::Map { .. }) {
                            pos = n.pos;
                        }
                    }
                    None => break,
                }
            }
            // serde names an unknown field in backticks: point at that key.
            if let Some(name) = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
            {
                if let Some(k) = node.key(name) {
                    pos = k.pos;
                }
            }
            Problem::new(pos, message)
        }
    }
}

/// The most structural problems [`Node::typed_all`] reports in one run.
pub const MAX_PROBLEMS: usize = 64;

/// Remove what a deserialization error is about from `json`: the unknown key it names, or the
/// value at its path. Whether something was removed.
fn set_aside(json: &mut serde_json::Value, path: &serde_path_to_error::Path, message: &str) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    // The container of what goes: the whole path for an unknown key, all but the last segment
    // for a value.
    let (container, last) = match unknown {
        // The path may end at the unknown key itself.
        Some(name) => match segments.split_last() {
            Some((Segment::Map { key }, rest)) if key == name => (rest, None),
            _ => (&segments[..], None),
        },
        None => match segments.split_last() {
            Some((last, rest)) => (rest, Some(*last)),
            None => return false,
        },
    };
    let mut node = json;
    for seg in container {
        let next = match (seg, node) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, serde_json::Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (unknown, last, node) {
        (Some(name), _, serde_json::Value::Object(m)) => m.remove(name).is_some(),
        (None, Some(Segment::Map { key }), serde_json::Value::Object(m)) => m.remove(key.as_str()).is_some(),
        (None, Some(Segment::Seq { index }), serde_json::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// The most YAML values (nodes) a configuration file may have.
pub(crate) const CONFIG_NODES: usize = 100_000;

/// Parse a YAML document into a positioned tree. An empty document is `Null`.
pub fn parse(src: &str) -> Result<Node, Problem> {
    parse_limited(src, CONFIG_NODES, "a configuration file")
}

/// Parse a document of at most `max_nodes` values; `what` names the file in the message when
/// it has more ("a policy file").
pub(crate) fn parse_limited(src: &str, max_nodes: usize, what: &str) -> Result<Node, Problem> {
    if src.trim().is_empty() {
        return Ok(Node {
            pos: Pos { line: 1, column: 1 },
            value: Value::Null,
        });
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = max_nodes;
    budget.max_events = max_nodes.saturating_mul(2);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let spanned: serde_saphyr::Spanned<NodeValue> = serde_saphyr::from_str_with_options(src, options)
        .map_err(|e| {
            let pos = e.location().map(to_pos).unwrap_or(Pos { line: 1, column: 1 });
            Problem::new(pos, message(&e, max_nodes, what))
        })?;
    Ok(Node {
        pos: to_pos(spanned.referenced),
        value: spanned.value.0,
    })
}

/// A parse error in the user's words, not the library's.
fn message(e: &serde_saphyr::Error, max_nodes: usize, what: &str) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } =
        e
    {
        e = error;
    }
    match e {
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("`{k}` is written twice in the same mapping: keep one"),
            None => "a key is written twice in the same mapping: keep one".into(),
        },
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            B::Nodes { .. } | B::Events { .. } => {
                format!("{what} may have at most {max_nodes} YAML values; this one has more")
            }
            B::Depth { .. } => "values are nested too deeply (more than 64 levels)".into(),
            B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } => {
                "too many YAML anchors or aliases (*ref): write the values out".into()
            }
            B::Documents { .. } => "too many YAML documents (---) in one file".into(),
            B::ScalarBytes { .. } => "too much text in the file's values".into(),
            _ => "the file is over one of YAML's safety limits (anchors, merges, size)".into(),
        },
        other => {
            let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
            first_line(&other.render_with_options(opts))
        }
    }
}

/// The text of a file, or where it stops being UTF-8.
pub fn text(bytes: Vec<u8>) -> Result<String, Problem> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let pos = Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        };
        let byte = bytes.get(valid).copied().unwrap_or_default();
        Problem::new(
            pos,
            format!("the file is not UTF-8 (byte 0x{byte:02x} here): save it as UTF-8"),
        )
    })
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("invalid YAML").trim();
    // serde-saphyr appends " at line X column Y"; we print the position ourselves.
    match line.rfind(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

fn to_pos(loc: serde_saphyr::Location) -> Pos {
    Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    }
}

/// The value part of a node, deserialized through serde-saphyr with spans on every child.
struct NodeValue(Value);

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn child(s: serde_saphyr::Spanned<NodeValue>) -> Node {
    Node {
        pos: to_pos(s.referenced),
        value: s.value.0,
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Str(v.to_string()),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue(Value::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_saphyr::Spanned<NodeValue>>()? {
            items.push(child(item));
        }
        Ok(NodeValue(Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(k) = map.next_key::<serde_saphyr::Spanned<KeyText>>()? {
            let v = map.next_value::<serde_saphyr::Spanned<NodeValue>>()?;
            let key = Key {
                pos: to_pos(k.referenced),
                name: k.value.0,
            };
            if entries.iter().any(|(e, _)| e.name == key.name) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.name)));
            }
            entries.push((key, child(v)));
        }
        Ok(NodeValue(Value::Map(entries)))
    }
}

/// A mapping key: any scalar, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = NodeValue::deserialize(d)?;
        let node = Node {
            pos: Pos::default(),
            value: v.0,
        };
        match node.as_scalar() {
            Some(s) => Ok(KeyText(s)),
            None if matches!(node.value, Value::Null) => Ok(KeyText(String::new())),
            None => Err(de::Error::custom("mapping keys must be plain scalars")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_values() {
        let src = "- from: https://a.example.com\n  allowed_users:\n    - alice@example.com\n";
        let n = parse(src).unwrap();
        let Value::Seq(items) = &n.value else {
            panic!("seq")
        };
        let route = &items[0];
        assert_eq!(route.pos, Pos { line: 1, column: 3 });
        assert_eq!(
            route.key("allowed_users").unwrap().pos,
            Pos { line: 2, column: 3 }
        );
        let users = route.get("allowed_users").unwrap();
        let Value::Seq(u) = &users.value else {
            panic!("seq")
        };
        assert_eq!(u[0].pos, Pos { line: 3, column: 7 });
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
    }

    #[test]
    fn scalars_keep_their_types() {
        let n = parse("a: true\nb: 12\nc: 12h\nd: ~\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("b").unwrap().value, Value::Int(12));
        assert_eq!(n.get("c").unwrap().value, Value::Str("12h".into()));
        assert_eq!(n.get("d").unwrap().value, Value::Null);
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        #[serde(default)]
        list: Vec<u32>,
    }

    #[test]
    fn typed_errors_point_at_the_key() {
        let n = parse("name: x\nnmae: y\n").unwrap();
        let e = n.typed::<T>().unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 1 });
        assert!(e.message.contains("unknown field `nmae`"), "{}", e.message);
        let n = parse("name: x\nlist:\n  - 1\n  - nope\n").unwrap();
        let e = n.typed::<T>().unwrap_err();
        assert_eq!(e.pos, Pos { line: 4, column: 5 }, "{}", e.message);
    }
}
#[cfg(test)]
mod typed_all_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        lifetime: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        listen: String,
        #[serde(default)]
        metrics_listen: Option<String>,
        #[serde(default)]
        cookie: Option<Inner>,
    }

    #[test]
    fn every_structural_problem_is_reported_at_once() {
        let node = parse("listen: a\nlifetme: 8h\nmetrics_listen: 9180\ncookie:\n  lifetme: 8h\n").unwrap();
        let problems = node.typed_all::<Outer>().unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.pos, p.message))
            .collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(
            text.iter().any(|t| t.starts_with("2:1: unknown field `lifetme`")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("3:") && t.contains("expected a string")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("5:3: unknown field `lifetme`")),
            "{text:#?}"
        );
    }
}
