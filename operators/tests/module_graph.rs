//! The module graph has no circles: the tree draws the dataflow only if a stage never reaches
//! back into an earlier one's module that reaches into it.
//!
//! Parser-light on purpose (no syn, no cargo-modules): every `crate::a::b::…` path in the code,
//! including the members of `use crate::{…}` groups, is an edge from the file's module to the
//! longest module prefix of the path. Comments are skipped. Paths through `super::` are not
//! followed: they stay inside a file or a folder. Two graphs are checked per crate:
//! * between top-level modules (the folders under `src/`), test modules included: a test that
//!   reaches back into an earlier stage is a circle too;
//! * between all modules (files), without the `#[cfg(test)] mod tests` at the end of a file: a
//!   unit test may compare two siblings (the fast scan with the serde walk it must agree with).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module path of a file relative to `src/`: `lib.rs`/`main.rs` → "", `a/mod.rs` → "a",
/// `a/b.rs` → "a::b".
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<&str> = rel.split('/').collect();
    if matches!(parts.last(), Some(&"mod") | Some(&"lib") | Some(&"main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its comments (doc comments name paths that are not dependencies).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut in_block = false;
    for line in src.lines() {
        let mut rest = line;
        if in_block {
            match rest.find("*/") {
                Some(end) => {
                    rest = &rest[end + 2..];
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(start) = rest.find("/*") {
            if !rest[..start].contains('"') {
                in_block = !rest[start..].contains("*/");
                rest = &rest[..start];
            }
        }
        if let Some(at) = rest.find("//") {
            if !rest[..at].contains('"') {
                rest = &rest[..at];
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The file without its trailing `#[cfg(test)] mod tests` (by convention the last item).
fn strip_test_module(src: &str) -> &str {
    let mut from = 0;
    while let Some(at) = src[from..].find("#[cfg(test)]") {
        let at = from + at;
        let rest = src[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        if rest.starts_with("mod ") && (at == 0 || src.as_bytes()[at - 1] == b'\n') {
            return &src[..at];
        }
        from = at + 1;
    }
    src
}

/// Reads a use tree (or a plain path) after `crate::`, pushing every leaf path.
fn parse_tree(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(i);
    if *i < s.len() && s[*i] == b'{' {
        *i += 1;
        loop {
            skip_ws(i);
            if *i >= s.len() {
                return;
            }
            if s[*i] == b'}' {
                *i += 1;
                return;
            }
            parse_tree(s, i, prefix.clone(), out);
            // past `as alias` up to the separator
            while *i < s.len() && s[*i] != b',' && s[*i] != b'}' {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b',' {
                *i += 1;
            }
        }
    }
    let start = *i;
    while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
        *i += 1;
    }
    let mut path = prefix;
    if *i > start {
        path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
        if s[*i..].starts_with(b"::") {
            *i += 2;
            parse_tree(s, i, path, out);
            return;
        }
    }
    out.push(path);
}

/// Every `crate::…` path named by the code of `src`, as segments after `crate`.
fn crate_paths(src: &str) -> Vec<Vec<String>> {
    let code = strip_comments(src);
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let at = from + at;
        let before = if at == 0 { b' ' } else { s[at - 1] };
        let mut i = at + "crate::".len();
        if !(before.is_ascii_alphanumeric() || before == b'_' || before == b':' || before == b'$') {
            parse_tree(s, &mut i, Vec::new(), &mut out);
        }
        from = i.max(at + 1);
    }
    out
}

/// Module graph of one crate's files, given as (path relative to `src/`, source). With
/// `top_level`, modules are collapsed to their first segment.
fn graph(files: &[(String, String)], top_level: bool) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let node = |m: &str| -> String {
        if top_level {
            m.split("::").next().unwrap_or("").to_string()
        } else {
            m.to_string()
        }
    };
    let mut g = Graph::new();
    for (rel, src) in files {
        let from = module_of(rel);
        if from.is_empty() {
            continue; // the crate root declares every module
        }
        let entry = g.entry(node(&from)).or_default();
        let code = if top_level { src.as_str() } else { strip_test_module(src) };
        for path in crate_paths(code) {
            // the longest prefix of the path that is a module
            let target = (1..=path.len()).rev().map(|k| path[..k].join("::")).find(|p| modules.contains(p));
            if let Some(target) = target {
                let (a, b) = (node(&from), node(&target));
                if a != b && !b.is_empty() {
                    entry.insert(b);
                }
            }
        }
    }
    g
}

/// A circle of the graph, as the modules along it (first = last), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(g: &Graph, n: &str, marks: &mut BTreeMap<String, Mark>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|m| m == n).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, next, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn read_crate(src: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source folder") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&p).expect("readable source file"))
        })
        .collect()
}

fn assert_acyclic(crate_src: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(crate_src);
    let files = read_crate(&src);
    assert!(files.len() > 1, "no sources found under {}", src.display());
    for top_level in [true, false] {
        let g = graph(&files, top_level);
        if let Some(cycle) = find_cycle(&g) {
            panic!(
                "{}: modules import each other in a circle ({}): {}",
                src.display(),
                if top_level { "top-level modules" } else { "files" },
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn operators_modules_have_no_circle() {
    assert_acyclic("src");
}

#[test]
fn learning_modules_have_no_circle() {
    assert_acyclic("../learning/src");
}

#[test]
fn vigil_modules_have_no_circle() {
    assert_acyclic("../src");
}

#[test]
fn dataflows_modules_have_no_circle() {
    assert_acyclic("../dataflows/src");
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn a_circle_through_a_use_group_is_found() {
    let f = files(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
        ("a/mod.rs", "pub mod x;"),
        ("a/x.rs", "use crate::b::Y;\n/// [`crate::c`] in a comment is no dependency\nfn f() {}"),
        ("b.rs", "use crate::{\n    c::Z,\n    a::x::{self, W as V},\n};"),
        ("c.rs", "// use crate::a::x;\npub struct Z;"),
    ]);
    let top = graph(&f, true);
    assert_eq!(top["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(top["b"], BTreeSet::from(["a".to_string(), "c".to_string()]));
    assert!(top["c"].is_empty(), "comments are skipped: {top:?}");
    let cycle = find_cycle(&top).expect("a → b → a");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()));
    let all = graph(&f, false);
    assert!(find_cycle(&all).is_some(), "a::x → b → a::x: {all:?}");
}

#[test]
fn a_circle_inside_a_folder_is_found_only_between_files() {
    let f = files(&[
        ("event/mod.rs", "pub mod parse; mod scan;"),
        ("event/parse.rs", "use crate::event::scan;\nfn f() { scan::scan(); }"),
        ("event/scan.rs", "fn g() { let _ = crate::event::parse::MAX; }"),
        ("batch.rs", "use crate::event::parse::EventParser;"),
    ]);
    assert!(find_cycle(&graph(&f, true)).is_none());
    assert!(find_cycle(&graph(&f, false)).is_some());
}

#[test]
fn a_circle_through_a_test_module_counts_between_folders_only() {
    let f = files(&[
        ("event/mod.rs", "pub mod parse;\npub mod scan;"),
        ("event/parse.rs", "use crate::event::scan::scan;"),
        ("event/scan.rs", "pub fn scan() {}\n\n#[cfg(test)]\nmod tests {\n    use crate::event::parse::X;\n}\n"),
        ("state.rs", "#[cfg(test)]\nmod tests {\n    use crate::generator::G;\n}\n"),
        ("generator.rs", "use crate::state::S;"),
    ]);
    assert!(find_cycle(&graph(&f, true)).is_some(), "state → generator → state through a test");
    let files_only = graph(&f, false);
    assert!(files_only["event::scan"].is_empty(), "{files_only:?}");
    assert_eq!(find_cycle(&files_only), None);
}

#[test]
fn a_layered_graph_has_no_circle() {
    let f = files(&[
        ("batch.rs", "use crate::features::WindowFeatures;"),
        ("features/mod.rs", "pub mod exact_sum;\nuse crate::time::rfc3339::HOUR_MS;"),
        ("features/exact_sum.rs", ""),
        ("time/mod.rs", "pub mod rfc3339;"),
        ("time/rfc3339.rs", "pub const HOUR_MS: i64 = 3_600_000;"),
    ]);
    assert_eq!(find_cycle(&graph(&f, true)), None);
    assert_eq!(find_cycle(&graph(&f, false)), None);
}
