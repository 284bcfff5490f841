//! Tests that keep the module graph as `lib.rs` draws it: the top-level modules in declared
//! layers ([`LAYERS`]), each using only layers below its own; and no two submodules of one module
//! using each other (directly or around a loop). A module may use its parent's items and its
//! children: those edges are how Rust modules work, not cycles of meaning.
//!
//! It reads the sources (`use crate::…`, `super::…` and `crate::…` paths in code, test modules
//! left out) rather than compiling them: a cycle is a fact about the text a reader follows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` but the binary, with its module path (`api::error`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["main"] || parts == ["lib"] {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests { … }` (always
/// at the end here).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text
        .find("#[cfg(test)]\nmod tests")
        .or_else(|| text.find("#[cfg(test)]\npub(crate) mod tests"))
    {
        Some(i) => &text[..i],
        None => &text,
    };
    code.lines()
        .map(|line| {
            // A comment starts a line or follows white space (`https://` in a string does not).
            let cut = line
                .match_indices("//")
                .find(|(i, _)| *i == 0 || line[..*i].ends_with(char::is_whitespace))
                .map(|(i, _)| i);
            &line[..cut.unwrap_or(line.len())]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `file` (module `module`) refers to, resolved to known modules.
fn references(
    module: &str,
    is_mod_rs: bool,
    code: &str,
    known: &BTreeSet<String>,
) -> BTreeSet<String> {
    let own: Vec<&str> = module.split("::").collect();
    // `super` of `a::b` (in a/b.rs or a/b/mod.rs) is `a`.
    let parent: Vec<&str> = own[..own.len() - 1].to_vec();
    let _ = is_mod_rs;
    let mut paths: Vec<Vec<String>> = Vec::new();
    let bytes = code.as_bytes();
    for (root, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
        let mut at = 0;
        while let Some(i) = code[at..].find(root) {
            let start = at + i + root.len();
            at = start;
            // Not part of a longer identifier such as `my_crate::`.
            let before = at - root.len();
            if before > 0
                && (bytes[before - 1].is_ascii_alphanumeric() || bytes[before - 1] == b'_')
            {
                continue;
            }
            let rest = &code[start..];
            let mut heads: Vec<String> = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(0)];
                heads.extend(inner.split(',').map(|s| s.trim().to_owned()));
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                heads.push(rest[..end].to_owned());
            }
            for head in heads {
                let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                path.extend(
                    head.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                paths.push(path);
            }
        }
    }
    let mut out = BTreeSet::new();
    for path in paths {
        // The longest prefix that names a module.
        for len in (1..=path.len()).rev() {
            let candidate = path[..len].join("::");
            if known.contains(&candidate) {
                if candidate != module {
                    out.insert(candidate);
                }
                break;
            }
        }
    }
    out
}

/// The top-level modules, top layer first: a module may use only modules of layers below its
/// own (not its own layer's). A new top-level module must be placed here.
pub const LAYERS: &[&[&str]] = &[
    // The process: wiring.
    &["app"],
    // The ways in: MCP transports, one call, the set-up check.
    &["transport", "oneshot", "setup_check"],
    // Every setting of the layers below, from the command line.
    &["config"],
    // MCP: tools, resources, prompts, what agents read.
    &["mcp"],
    // Who calls (OAuth access tokens, scopes, the person).
    &["oauth"],
    // The order promise; the mirror of the order book.
    &["orders", "mirror"],
    // The 1NCE client.
    &["api"],
    // Stored state.
    &["state"],
    // Utilities that use nothing of the crate, and the sandbox, which stands apart.
    &[
        "clock",
        "rate_limit",
        "exit_status",
        "stderr_log",
        "sandbox",
    ],
];

/// Every edge (user, used) between two modules of the crate, read from the sources.
fn edges() -> (BTreeSet<String>, Vec<(String, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges: Vec<(String, String)> = Vec::new();
    for (module, path) in &files {
        let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
        for target in references(module, is_mod_rs, &code_of(path), &known) {
            edges.push((module.clone(), target));
        }
    }
    (known, edges)
}

/// A cycle in `graph`, if there is one, as the list of nodes around it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str())
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The module `module` belongs to one level below `parent` (`parent` "" is the crate).
fn child_of<'a>(parent: &str, module: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        module
    } else {
        module.strip_prefix(parent)?.strip_prefix("::")?
    };
    let len = rest.find("::").unwrap_or(rest.len());
    let child_len = module.len() - rest.len() + len;
    Some(&module[..child_len])
}

#[test]
fn every_top_level_module_uses_only_the_layers_below_it() {
    let (known, edges) = edges();
    let layer = |module: &str| {
        let top = module.split("::").next().unwrap_or(module);
        LAYERS.iter().position(|layer| layer.contains(&top))
    };
    for module in known.iter().filter(|m| *m != "module_graph") {
        assert!(
            layer(module).is_some(),
            "{module} is in no layer: place it in module_graph::LAYERS (and in lib.rs's map)"
        );
    }
    let mut wrong = Vec::new();
    for (from, to) in &edges {
        let (a, b) = (
            from.split("::").next().unwrap(),
            to.split("::").next().unwrap(),
        );
        if a != b && layer(from) >= layer(to) {
            wrong.push(format!("{from} → {to}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "these uses run across or up the layers of module_graph::LAYERS: {}",
        wrong.join(", ")
    );
    // Every module lib.rs declares is in its map.
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let (map, code) = lib.split_at(lib.find("\npub mod ").unwrap_or(lib.len()));
    for line in code.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let name = line.trim_end_matches(';');
        assert!(
            map.contains(&format!("[`{name}`]")),
            "lib.rs declares {name} but its map does not name it"
        );
    }
}

#[test]
fn no_module_uses_a_sibling_that_uses_it_back() {
    let (known, edges) = edges();
    // Every module that has children, and the crate itself.
    let mut parents: BTreeSet<String> = known
        .iter()
        .filter_map(|m| m.rfind("::").map(|i| m[..i].to_owned()))
        .collect();
    parents.insert(String::new());
    let mut checked = 0;
    for parent in &parents {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in &edges {
            let (Some(a), Some(b)) = (child_of(parent, from), child_of(parent, to)) else {
                continue;
            };
            if a != b {
                graph.entry(a.to_owned()).or_default().insert(b.to_owned());
            }
        }
        checked += graph.len();
        if let Some(cycle) = cycle(&graph) {
            panic!(
                "modules use each other in a circle: {} (under {})",
                cycle.join(" → "),
                if parent.is_empty() {
                    "the crate"
                } else {
                    parent
                }
            );
        }
    }
    assert!(
        checked > 10,
        "the graph was read: {checked} modules with edges"
    );
}

#[test]
fn a_planted_cycle_is_found() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph
        .entry("config".into())
        .or_default()
        .insert("transport".into());
    graph
        .entry("transport".into())
        .or_default()
        .insert("config".into());
    assert!(cycle(&graph).is_some());
    graph.remove("transport");
    assert!(cycle(&graph).is_none());
    let known: BTreeSet<String> = ["api", "api::error", "api::retry"].map(String::from).into();
    let refs = references(
        "api::retry",
        false,
        "use super::error::ApiError;\nuse crate::api::{error, retry};",
        &known,
    );
    assert_eq!(
        refs,
        BTreeSet::from(["api::error".to_owned(), "api".to_owned()])
    );
}
