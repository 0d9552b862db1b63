//! The workspace's module structure, checked from its source:
//!
//! * the sans-IO crate (`proto/`) is pure: no tokio, no socket, no clock reading, no thread;
//! * dependencies between the top-level modules of the client (`src/`) point one way: no two
//!   modules import each other, directly or through a loop. A dependency is any `crate::` path:
//!   a plain one, every member of a `crate::{…}` group (nested groups included), and an item
//!   the crate root re-exports (`crate::ClientBuilder` is a dependency on `builder`);
//! * no production code is compiled differently for tests or fuzzing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of a crate's `src/` belongs to (`src/a.rs`, `src/a/...` → `a`;
/// `lib.rs` → `lib`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.strip_suffix(".rs").unwrap_or(first).to_string())
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

/// A crate's top-level modules and their production code.
struct Crate {
    /// Top-level module → the code of its files (`lib` for the crate root).
    code: BTreeMap<String, String>,
}

fn read_crate(dir: &str) -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
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
    Crate { code }
}

/// Parses the use-tree at the start of `text` (after `crate::` or `use`): `a::b::C`,
/// `a::{b, c::{D, E as F}}`, `{a, b}`. Returns each leaf's full path and the name it is bound
/// to (its alias, or its last segment).
fn use_tree(text: &str) -> Vec<(Vec<String>, String)> {
    fn ident(s: &str) -> (&str, &str) {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        (&s[..end], &s[end..])
    }
    fn tree<'a>(
        mut s: &'a str,
        prefix: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, String)>,
    ) -> &'a str {
        let depth = prefix.len();
        loop {
            s = s.trim_start();
            if let Some(rest) = s.strip_prefix('{') {
                s = rest;
                loop {
                    s = tree(s.trim_start(), prefix, out).trim_start();
                    match s.strip_prefix(',') {
                        Some(rest) => s = rest,
                        None => break,
                    }
                    if s.trim_start().starts_with('}') {
                        break;
                    }
                }
                s = s.trim_start().strip_prefix('}').unwrap_or(s);
                break;
            }
            let (name, rest) = ident(s);
            if name.is_empty() {
                break;
            }
            prefix.push(name.to_string());
            s = rest;
            if let Some(rest) = s.strip_prefix("::") {
                s = rest;
                continue;
            }
            let rest_trimmed = s.trim_start();
            let alias = match rest_trimmed.strip_prefix("as ") {
                Some(rest) => {
                    let (alias, rest) = ident(rest.trim_start());
                    s = rest;
                    alias.to_string()
                }
                None => name.to_string(),
            };
            out.push((prefix.clone(), alias));
            break;
        }
        prefix.truncate(depth);
        s
    }
    let mut out = Vec::new();
    tree(text, &mut Vec::new(), &mut out);
    out
}

/// The items the crate root re-exports from its own modules (`pub use builder::ClientBuilder;`
/// → `ClientBuilder` → `builder`).
fn root_reexports(krate: &Crate) -> BTreeMap<String, String> {
    let modules: BTreeSet<&String> = krate.code.keys().collect();
    let lib = &krate.code["lib"];
    let mut out = BTreeMap::new();
    for (at, _) in lib.match_indices("pub use ") {
        for (path, name) in use_tree(&lib[at + "pub use ".len()..]) {
            if path.len() > 1 && modules.contains(&path[0]) {
                out.insert(name, path[0].clone());
            }
        }
    }
    out
}

/// Which top-level modules each module of `krate` refers to through `crate::` paths.
fn dependencies(krate: &Crate) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&String> = krate.code.keys().collect();
    let reexports = root_reexports(krate);
    krate
        .code
        .iter()
        .filter(|(module, _)| *module != "lib")
        .map(|(module, code)| {
            let used = code
                .match_indices("crate::")
                .flat_map(|(at, _)| use_tree(&code[at + "crate::".len()..]))
                .filter_map(|(path, _)| {
                    let first = &path[0];
                    let target = if modules.contains(first) {
                        first.clone()
                    } else {
                        reexports.get(first)?.clone()
                    };
                    (target != *module && target != "lib").then_some(target)
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
fn client_module_dependencies_point_one_way() {
    let client = read_crate("src");
    let graph = dependencies(&client);
    assert!(
        graph["client"].contains("connection"),
        "the parser finds imports"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("modules import each other: {}", cycle.join(" → "));
    }
}

#[test]
fn grouped_imports_and_root_reexports_are_dependencies() {
    let mut client = Crate {
        code: BTreeMap::new(),
    };
    client.code.insert(
        "lib".into(),
        "mod a; mod b; mod c; pub use a::{Alpha, inner::Beta as B};".into(),
    );
    client.code.insert(
        "b".into(),
        "use crate::{c::{self, Gamma}, error::Error};".into(),
    );
    client
        .code
        .insert("c".into(), "fn f() -> crate::B { todo!() }".into());
    client.code.insert(
        "a".into(),
        "use crate::{b::X};\nstruct A(crate::Alpha);".into(),
    );
    let graph = dependencies(&client);
    assert_eq!(graph["b"], BTreeSet::from(["c".to_string()]));
    assert_eq!(
        graph["c"],
        BTreeSet::from(["a".to_string()]),
        "an aliased root re-export"
    );
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn the_use_tree_parser_reads_nested_groups() {
    let leaves: Vec<String> = use_tree("{a::{b, c::{D, E as F}}, g};")
        .into_iter()
        .map(|(path, name)| format!("{}={name}", path.join("::")))
        .collect();
    assert_eq!(leaves, ["a::b=b", "a::c::D=D", "a::c::E=F", "g=g"]);
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
fn the_sans_io_crate_does_no_io() {
    let core = read_crate("proto/src");
    assert!(core.code.contains_key("pipeline") && core.code.contains_key("protocol"));
    for (module, code) in &core.code {
        for forbidden in [
            "tokio",
            "std::net::Tcp",
            "std::net::Udp",
            "std::thread::spawn",
            "Instant::now",
            "SystemTime::now",
            "std::fs",
            "memcached_autodiscovery::",
        ] {
            assert!(
                !code.contains(forbidden),
                "the sans-IO module `{module}` uses `{forbidden}`"
            );
        }
    }
}

#[test]
fn production_code_is_the_same_for_tests_and_fuzzing() {
    for dir in ["src", "proto/src"] {
        for (module, code) in &read_crate(dir).code {
            for gate in [
                "feature = \"fuzzing\"",
                "feature = \"testkit\"",
                "cfg(fuzzing)",
                "#[cfg(test)]",
            ] {
                assert!(
                    !code.contains(gate),
                    "`{dir}/{module}` compiles code only for tests or fuzzing ({gate})"
                );
            }
        }
    }
}
