//! Layers point down: every `crate::…` and `super::…` path in `src/**` is resolved to the
//! module it names, and the test fails on any arrow between top-level modules that the table
//! below does not allow, on any cycle between top-level modules, and on any cycle between the
//! submodules of one top-level module (e.g. `api::live` ↔ `api::metrics`).
//!
//! The table is the one `docs/architecture.md` explains (and lists: a test below fails when its
//! "May use" column differs). Test code inside `src/` counts too: a unit test that needs a higher
//! layer belongs in `tests/`.
//!
//! The reader is a small lexer, not a Rust parser: comments and string literals are skipped,
//! `use a::{b, c::d}` groups are expanded, `super::` is resolved against the file's module path
//! and the inline `mod … { }` blocks around it, and an item a `mod.rs` re-exports
//! (`pub use live::Live`) counts as an arrow to the submodule that defines it.

#![allow(clippy::unwrap_used)] // a test: a missing file is a failure to show

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Which top-level modules each one may use. `daemon` may use every module.
const ALLOWED: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("config", &["clock"]),
    ("workflow", &["config", "clock"]),
    ("sip", &["config", "clock"]),
    ("media", &["config", "clock"]),
    ("store", &["config", "clock"]),
    (
        "acd",
        &["workflow", "sip", "media", "store", "config", "clock"],
    ),
    // media: an uploaded prompt is decoded and converted (or spoken) by media's public WAV and
    // text-to-speech functions, the same ones the daemon uses at start; no RTP or leg internals.
    ("api", &["acd", "store", "media", "config", "clock"]),
    // admin: the offline commands (user, check --database, export, import) open the store
    // and use the API's merged-model loader.
    ("admin", &["api", "store", "config", "clock"]),
    ("cli", &["daemon", "admin", "config"]),
];

/// Low-level helpers every module may use; they use nothing of rgsd themselves.
const SHARED: &[&str] = &["util"];

/// One `crate::…`/`super::…` path found in a file, resolved to absolute segments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The module path of the code that holds the reference (file module + inline modules).
    from: Vec<String>,
    /// The path it names, from the crate root.
    to: Vec<String>,
    line: usize,
}

/// Replaces comments and the contents of string and char literals with spaces, keeping
/// newlines (so line numbers stay right).
fn blank_comments_and_strings(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // Raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push(c);
            for _ in i + 1..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (1..=hashes).all(|k| b.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                for _ in i..=j.min(b.len() - 1) {
                    out.push(' ');
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads the path that starts at `i` (just after `crate::` or the `super::`s): a name, a
/// `::`-joined chain, or a `{…}` group (expanded). Returns every path named, each as segments.
fn read_paths(b: &[char], mut i: usize) -> Vec<Vec<String>> {
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) == Some(&'{') {
        // Split the group at top-level commas; each item is a path of its own.
        let mut depth = 0;
        let mut start = i + 1;
        let mut out = Vec::new();
        let mut j = i;
        while j < b.len() {
            match b[j] {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let item: String = b[start..j].iter().collect();
                    let item: Vec<char> = item.chars().collect();
                    if item.iter().any(|c| is_ident(*c)) {
                        out.extend(read_paths(&item, 0));
                    }
                    start = j + 1;
                    if b[j] == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        return out;
    }
    let mut segs = Vec::new();
    loop {
        skip_ws(&mut i);
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i == start {
            // `a::{…}` after a name: expand the group under the prefix.
            if b.get(i) == Some(&'{') && !segs.is_empty() {
                return read_paths(b, i)
                    .into_iter()
                    .map(|tail| segs.iter().cloned().chain(tail).collect())
                    .collect();
            }
            break;
        }
        segs.push(b[start..i].iter().collect::<String>());
        skip_ws(&mut i);
        if b.get(i) == Some(&':') && b.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            break;
        }
    }
    if segs.is_empty() {
        Vec::new()
    } else {
        vec![segs]
    }
}

/// Every `crate::` and `super::` reference in one file whose module path is `module`.
fn references(module: &[String], src: &str) -> Vec<Reference> {
    let clean = blank_comments_and_strings(src);
    let b: Vec<char> = clean.chars().collect();
    let mut out = Vec::new();
    // Inline modules open at this point: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    let word_at = |i: usize, w: &str| {
        let w: Vec<char> = w.chars().collect();
        b.len() >= i + w.len()
            && b[i..i + w.len()] == w[..]
            && (i == 0 || !is_ident(b[i - 1]))
            && b.get(i + w.len()).is_none_or(|c| !is_ident(*c))
    };
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
        }
        if c == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
        } else if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if c == ';' {
            pending_mod = None;
        }
        if word_at(i, "mod") {
            let mut j = i + 3;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let start = j;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            pending_mod = Some(b[start..j].iter().collect());
            i = j;
            continue;
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        if word_at(i, "crate") && b.get(i + 5) == Some(&':') && b.get(i + 6) == Some(&':') {
            for to in read_paths(&b, i + 7) {
                out.push(Reference {
                    from: here.clone(),
                    to,
                    line,
                });
            }
            i += 7;
            continue;
        }
        if word_at(i, "super") {
            let mut j = i;
            let mut base = here.clone();
            while word_at(j, "super") && b.get(j + 5) == Some(&':') && b.get(j + 6) == Some(&':') {
                base.pop();
                j += 7;
                while j < b.len() && b[j].is_whitespace() {
                    j += 1;
                }
            }
            if j > i {
                for tail in read_paths(&b, j) {
                    out.push(Reference {
                        from: here.clone(),
                        to: base.iter().cloned().chain(tail).collect(),
                        line,
                    });
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// `pub use sub::Name` and `pub use sub::{A, B}` (or `pub(crate) use`) in a `mod.rs` (or `foo.rs` with a `foo/`
/// folder): which submodule defines each re-exported name.
fn re_exports(src: &str) -> HashMap<String, String> {
    let clean = blank_comments_and_strings(src);
    let b: Vec<char> = clean.chars().collect();
    let mut out = HashMap::new();
    let text: String = b.iter().collect();
    // A crate-private re-export (`pub(crate) use`, `pub(super) use`) is an arrow just the same.
    for keyword in ["pub use ", "pub(crate) use ", "pub(super) use "] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(keyword) {
            let at = from + pos + keyword.len();
            let start = text[..at].chars().count();
            for path in read_paths(&b, start) {
                if path.len() >= 2 && path[0] != "crate" && path[0] != "super" {
                    out.insert(path[path.len() - 1].clone(), path[0].clone());
                }
            }
            from = at;
        }
    }
    out
}

struct Tree {
    /// Every reference, by file (relative to `src/`).
    refs: Vec<(PathBuf, Reference)>,
    /// For each module with submodules: re-exported name → submodule.
    re_exports: HashMap<String, HashMap<String, String>>,
    /// Names of submodules per top-level module.
    submodules: HashMap<String, BTreeSet<String>>,
}

fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn read_tree(src: &Path) -> Tree {
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    let mut tree = Tree {
        refs: Vec::new(),
        re_exports: HashMap::new(),
        submodules: HashMap::new(),
    };
    for file in files {
        let rel = file.strip_prefix(src).unwrap().to_path_buf();
        if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        let module = module_path(&rel);
        let text = std::fs::read_to_string(&file).unwrap();
        if module.len() >= 2 {
            tree.submodules
                .entry(module[0].clone())
                .or_default()
                .insert(module[1].clone());
        }
        if module.len() == 1 {
            tree.re_exports.insert(module[0].clone(), re_exports(&text));
        }
        for r in references(&module, &text) {
            tree.refs.push((rel.clone(), r));
        }
    }
    tree
}

/// The submodule of `top` a path names (through `top`'s re-exports), or `None` for an item of
/// `top` itself.
fn submodule_of(tree: &Tree, path: &[String]) -> Option<String> {
    let top = path.first()?;
    let second = path.get(1)?;
    if tree.submodules.get(top)?.contains(second) {
        return Some(second.clone());
    }
    tree.re_exports.get(top)?.get(second).cloned()
}

/// A cycle in `graph`, if any (as the list of nodes around it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut HashMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = HashMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Every problem in the tree, one line each.
fn problems(tree: &Tree) -> Vec<String> {
    let allowed: HashMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    let mut top_graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut sub_graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (file, r) in &tree.refs {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        if from != to {
            top_graph
                .entry(from.clone())
                .or_default()
                .insert(to.clone());
            let ok = SHARED.contains(&to.as_str())
                || (from == "daemon" && !SHARED.contains(&from.as_str()))
                || allowed
                    .get(from.as_str())
                    .is_some_and(|targets| targets.contains(&to.as_str()));
            if !ok {
                out.push(format!(
                    "src/{}:{}: {from} may not use {to} (crate::{})",
                    file.display(),
                    r.line,
                    r.to.join("::")
                ));
            }
            continue;
        }
        if let (Some(a), Some(b)) = (r.from.get(1), submodule_of(tree, &r.to))
            && *a != b
        {
            sub_graphs
                .entry(from.clone())
                .or_default()
                .entry(a.clone())
                .or_default()
                .insert(b);
        }
    }
    if let Some(cycle) = find_cycle(&top_graph) {
        out.push(format!("cycle between modules: {}", cycle.join(" -> ")));
    }
    for (top, graph) in &sub_graphs {
        if let Some(cycle) = find_cycle(graph) {
            out.push(format!(
                "cycle between submodules of {top}: {}",
                cycle
                    .iter()
                    .map(|m| format!("{top}::{m}"))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ));
        }
    }
    out
}

#[test]
fn layers_point_down_and_no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = read_tree(&src);
    // The reader found the tree (a broken walk must not pass silently).
    assert!(
        tree.refs.len() > 100,
        "only {} references found",
        tree.refs.len()
    );
    assert!(tree.submodules.get("api").is_some_and(|s| s.len() > 3));
    let problems = problems(&tree);
    assert!(
        problems.is_empty(),
        "{} layering problem(s) (allowed arrows: tests/layers.rs ALLOWED, explained in \
         docs/architecture.md):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn owned(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn reader_expands_groups_resolves_super_and_skips_comments() {
    let src = r#"
//! use crate::daemon::Nope;
use crate::{config::model::Config, store};
use super::live::{Live, LiveEvent};
const S: &str = "crate::daemon::Nope";
const C: char = '"';
fn f<'a>(x: &'a str) { let _ = crate::clock::now; }
/* crate::daemon::Nope */
#[cfg(test)]
mod tests {
    use super::*;
    use super::super::metrics::Metrics;
}
"#;
    let refs = references(&owned(&["api", "views"]), src);
    let to: Vec<Vec<String>> = refs.iter().map(|r| r.to.clone()).collect();
    assert_eq!(
        to,
        vec![
            owned(&["config", "model", "Config"]),
            owned(&["store"]),
            owned(&["api", "live", "Live"]),
            owned(&["api", "live", "LiveEvent"]),
            owned(&["clock", "now"]),
            owned(&["api", "metrics", "Metrics"]),
        ]
    );
    assert_eq!(refs[4].line, 7);
    // `use super::*` in `mod tests` names the file's own module: no arrow.
    assert_eq!(refs[5].from, owned(&["api", "views", "tests"]));
}

#[test]
fn a_bad_arrow_and_a_cycle_are_reported() {
    let mut tree = Tree {
        refs: Vec::new(),
        re_exports: HashMap::from([(
            "api".to_owned(),
            HashMap::from([("Live".to_owned(), "live".to_owned())]),
        )]),
        submodules: HashMap::from([(
            "api".to_owned(),
            BTreeSet::from(["live".to_owned(), "metrics".to_owned()]),
        )]),
    };
    let add = |tree: &mut Tree, file: &str, from: &[&str], src: &str| {
        for r in references(&owned(from), src) {
            tree.refs.push((PathBuf::from(file), r));
        }
    };
    add(
        &mut tree,
        "config/compile.rs",
        &["config", "compile"],
        "use crate::media::wav;",
    );
    add(
        &mut tree,
        "api/live.rs",
        &["api", "live"],
        "use super::metrics::Metrics;",
    );
    add(
        &mut tree,
        "api/metrics.rs",
        &["api", "metrics"],
        "use crate::api::Live;",
    );
    add(
        &mut tree,
        "api/views.rs",
        &["api", "views"],
        "use crate::acd::Queues;",
    );
    let problems = problems(&tree);
    assert_eq!(
        problems,
        vec![
            "src/config/compile.rs:1: config may not use media (crate::media::wav)".to_owned(),
            "cycle between submodules of api: api::live -> api::metrics -> api::live".to_owned(),
        ]
    );
}

/// The "May use" column of `docs/architecture.md`'s layer table is this file's `ALLOWED` (plus
/// `daemon`, which may use every module below it, and `util`, which uses none), so the document
/// cannot drift from what is enforced.
#[test]
fn architecture_doc_lists_the_enforced_table() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("a Layers section");
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (module, uses) = (cells[1].trim_matches('`'), cells[cells.len() - 2]);
        let names = uses
            .split(',')
            .filter_map(|n| n.trim().strip_prefix('`')?.strip_suffix('`'))
            .map(str::to_owned)
            .collect();
        documented.insert(module.to_owned(), names);
    }
    let mut enforced: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(m, uses)| {
            let uses = uses.iter().map(|u| (*u).to_owned()).collect();
            ((*m).to_owned(), uses)
        })
        .collect();
    enforced.insert("daemon".to_owned(), BTreeSet::new());
    for shared in SHARED {
        enforced.insert((*shared).to_owned(), BTreeSet::new());
    }
    assert_eq!(
        documented, enforced,
        "docs/architecture.md's layer table differs from ALLOWED"
    );
}
