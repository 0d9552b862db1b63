//! The library's module structure, checked from its source: dependencies between the top-level
//! modules of `src/` point one way (no two modules import each other, directly or through a
//! loop), the pure modules use no I/O, and no production code is compiled differently for tests
//! or fuzzing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules that must stay pure: bytes in, values out; no tokio, no sockets, no clock reads.
const PURE: &[&str] = &["protocol", "config", "distribution", "pipeline", "error"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/a.rs`, `src/a/...` → `a`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The code of a file without comments and without its unit-test module.
fn production_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Source {
    /// Top-level module → the code of its files.
    code: BTreeMap<String, String>,
}

fn source() -> Source {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut code: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = fs::read_to_string(&file).expect("a source file is readable");
        code.entry(module)
            .or_default()
            .push_str(&production_code(&text));
    }
    Source { code }
}

/// Which top-level modules each module refers to through `crate::`.
fn dependencies(source: &Source) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&String> = source.code.keys().collect();
    source
        .code
        .iter()
        .map(|(module, code)| {
            let used = code
                .match_indices("crate::")
                .filter_map(|(at, _)| {
                    let rest = &code[at + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // `crate::{a, b}` groups.
                    if rest.starts_with('{') {
                        return None;
                    }
                    (modules.contains(&name) && name != *module).then_some(name)
                })
                .collect();
            (module.clone(), used)
        })
        .collect()
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn module_dependencies_point_one_way() {
    let source = source();
    let graph = dependencies(&source);
    assert!(graph.contains_key("client") && graph.contains_key("pipeline"));
    assert!(
        graph["client"].contains("topology"),
        "the parser finds imports"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("modules import each other: {}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}

#[test]
fn pure_modules_do_no_io() {
    let source = source();
    for module in PURE {
        let code = &source.code[*module];
        for forbidden in [
            "tokio",
            "std::net::Tcp",
            "std::thread",
            "Instant::now",
            "SystemTime::now",
            "std::fs",
        ] {
            assert!(
                !code.contains(forbidden),
                "the pure module `{module}` uses `{forbidden}`"
            );
        }
        for other in [
            "connection",
            "transport",
            "topology",
            "client",
            "discovery",
            "cluster",
            "builder",
        ] {
            assert!(
                !code.contains(&format!("crate::{other}")),
                "the pure module `{module}` depends on the I/O module `{other}`"
            );
        }
    }
}

#[test]
fn production_code_is_the_same_for_tests_and_fuzzing() {
    let source = source();
    for (module, code) in &source.code {
        for gate in [
            "feature = \"fuzzing\"",
            "feature = \"testkit\"",
            "#[cfg(test)]",
        ] {
            assert!(
                !code.contains(gate),
                "`{module}` compiles code only for tests or fuzzing ({gate})"
            );
        }
    }
}
