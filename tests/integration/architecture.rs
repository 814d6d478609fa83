//! The map and the modules agree: every path `ARCHITECTURE.md` names exists, and no module
//! imports a sibling module that imports it back (directly or through others).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The source roots of the workspace's crates.
const SOURCE_ROOTS: [&str; 8] = [
    "src",
    "api/src",
    "validation/src",
    "plugins/sdk/src",
    "plugins/default/src",
    "agents/runner/src",
    "tests/apiserver/src",
    "tests/integration",
];

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, named by its path under the source root: `controller/task_executor`
/// (`mod.rs`, `lib.rs` and `main.rs` name their directory's module).
fn module_of(root: &Path, file: &Path) -> String {
    let relative = file
        .strip_prefix(root)
        .expect("under the root")
        .with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("/")
}

/// The names a `use`/path expression reaches through `prefix` (`super::`, `crate::x::`):
/// `prefix name` and each first name of `prefix {a, b::c}`.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices(prefix) {
        // `super::super::x` is not a sibling.
        if prefix == "super::" && text[..at].ends_with("super::") {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // First-level names of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.insert(ident(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

/// The code of a file without its `//` comments (doc links are not imports).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // `"https://…"` in a string is not a comment.
            Some(at) if !line[..at].ends_with(':') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every cycle among sibling modules: `a → b → a`, as module paths.
fn sibling_cycles(root: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|file| (module_of(root, file), file.clone()))
        .collect();
    let parent = |module: &str| module.rsplit_once('/').map_or("", |(p, _)| p).to_owned();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue; // the crate root is every module's parent, no one's sibling
        }
        let text = without_comments(&std::fs::read_to_string(file).expect("read a source file"));
        let dir = parent(module);
        let crate_prefix = if dir.is_empty() {
            "crate::".to_owned()
        } else {
            format!("crate::{}::", dir.replace('/', "::"))
        };
        let mut names = names_after(&text, "super::");
        names.extend(names_after(&text, &crate_prefix));
        for name in names {
            let sibling = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            if sibling != *module && modules.contains_key(&sibling) {
                edges.entry(module.clone()).or_default().insert(sibling);
            }
        }
    }
    let mut cycles = Vec::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start` (reported once, from its least name).
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().expect("non-empty");
            for next in edges.get(last).into_iter().flatten() {
                if next == start {
                    if path.iter().all(|m| m >= start) {
                        cycles.push(path.clone());
                    }
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    cycles
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut cycles = Vec::new();
    for source in SOURCE_ROOTS {
        let root = Path::new(ROOT).join(source);
        assert!(root.is_dir(), "{source} is a source root");
        for cycle in sibling_cycles(&root) {
            cycles.push(format!("{source}: {}", cycle.join(" → ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("lib.rs", "mod a;\nmod b;\nmod c;\n");
    write("a.rs", "use super::{b::Thing, other};\n");
    write("b.rs", "use crate::c;\n");
    write("c.rs", "/// Not [`super::b`].\nfn f() { super::a::g() }\n");
    assert_eq!(
        sibling_cycles(dir.path()),
        [["a", "b", "c"].map(str::to_owned).to_vec()]
    );
    write("c.rs", "fn f() {}\n");
    assert!(sibling_cycles(dir.path()).is_empty());
}

/// Paths in backquotes that look like the repository's (`src/…`, `tests/…`, a file with an
/// extension at the top level, …).
fn named_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 12] = [
        "src/",
        "api/",
        "validation/",
        "plugins/",
        "agents/",
        "tests/",
        "manifests/",
        "examples/",
        "docs/",
        "scripts/",
        "wit/",
        "benches/",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| TOP.iter().any(|top| quoted.starts_with(top)))
        .filter(|quoted| !quoted.contains(['*', '<', ' ', '{']))
        .map(|quoted| quoted.trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn every_path_the_architecture_names_exists() {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(paths.len() > 30, "the map names the tree: {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !Path::new(ROOT).join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}
