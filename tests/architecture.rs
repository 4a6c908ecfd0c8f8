//! The house plan holds: imports between the crate's modules run one way. Every `crate::x`
//! import (outside tests) is an edge from the file's top-level module to `x`; within a folder
//! module, `super::y` and `crate::folder::y` are edges between its files. Neither graph may have
//! a cycle, and nothing below `app` may import `app` (the command line).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::name` / `super::name` targets in `code`.
fn targets(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn module_imports_have_no_cycle_and_only_app_knows_the_command_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "main" || parts[0] == "lib") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let module = parts[0].clone();
        let entry = top.entry(module.clone()).or_default();
        for t in targets(code, "crate::") {
            // Root items such as `crate::VERSION_LINE` are not modules.
            let is_module = src.join(format!("{t}.rs")).exists() || src.join(&t).is_dir();
            if is_module && t != module {
                entry.insert(t);
            }
        }
        if parts.len() > 1 {
            let me = parts.join("/").trim_end_matches("/mod").to_string();
            let e = inner.entry(me.clone()).or_default();
            let mut local = targets(code, "super::");
            local.extend(targets(code, &format!("crate::{module}::")));
            for t in local {
                let target = format!("{module}/{t}");
                if target != me {
                    e.insert(target);
                }
            }
        }
    }
    assert!(top.len() >= 10, "modules found: {:?}", top.keys());
    if let Some(c) = find_cycle(&top) {
        panic!("import cycle between modules: {}", c.join(" → "));
    }
    if let Some(c) = find_cycle(&inner) {
        panic!("import cycle inside a module: {}", c.join(" → "));
    }
    for (module, deps) in &top {
        assert!(
            module == "app" || !deps.contains("app"),
            "{module} imports app (the command-line layer)"
        );
    }
}
