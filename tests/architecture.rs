//! The shape of the house, checked: which crate may depend on which (docs/architecture.md,
//! "Dependency rules"), and no import cycles between the modules of any crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a workspace crate lives says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Room {
    /// `shared/…`: what both roles use (contracts, ports, the photo library, the style vocabulary).
    Shared,
    /// `scheduler/` and the crates inside it (`scheduler/prompt`): prompt → plan → jobs.
    Scheduler,
    /// `worker/`: jobs → images.
    Worker,
    /// `worker/engines/…`: pure computation the worker runs (faces, paint, diffusion).
    Engine,
    /// The binary that wires every role (`src/`) and the load tests: they may use anything.
    Edge,
}

impl Room {
    fn of(relative_dir: &Path) -> Room {
        let dir = relative_dir.to_string_lossy().replace('\\', "/");
        match dir.as_str() {
            "" | "load-tests" => Room::Edge,
            d if d == "scheduler" || d.starts_with("scheduler/") => Room::Scheduler,
            "worker" => Room::Worker,
            d if d == "shared" || d.starts_with("shared/") => Room::Shared,
            d if d.starts_with("worker/engines/") => Room::Engine,
            other => panic!(
                "crate directory {other} is in no room: add it to docs/architecture.md and here"
            ),
        }
    }

    /// The rooms this room's crates may depend on.
    fn may_use(self, other: Room) -> bool {
        match self {
            Room::Edge => true,
            Room::Shared | Room::Engine => other == Room::Shared,
            Room::Scheduler => matches!(other, Room::Shared | Room::Scheduler),
            Room::Worker => matches!(other, Room::Shared | Room::Engine),
        }
    }
}

struct Crate {
    name: String,
    dir: PathBuf,
    room: Room,
    /// Workspace crates it depends on (normal, dev and build dependencies).
    uses: Vec<String>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_crates() -> Vec<Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    packages
        .iter()
        .map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap().to_path_buf();
            let relative = dir.strip_prefix(workspace_root()).unwrap().to_path_buf();
            let uses = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap())
                .filter(|name| names.contains(name))
                .map(str::to_string)
                .collect();
            Crate {
                name: package["name"].as_str().unwrap().to_string(),
                room: Room::of(&relative),
                dir,
                uses,
            }
        })
        .collect()
}

#[test]
fn no_crate_depends_on_another_roles_crate() {
    let crates = workspace_crates();
    let room: BTreeMap<&str, Room> = crates.iter().map(|c| (c.name.as_str(), c.room)).collect();
    let forbidden: Vec<String> = crates
        .iter()
        .flat_map(|c| c.uses.iter().map(move |used| (c, used)))
        .filter(|(c, used)| !c.room.may_use(room[used.as_str()]))
        .map(|(c, used)| {
            format!(
                "{} ({:?}) -> {used} ({:?})",
                c.name,
                c.room,
                room[used.as_str()]
            )
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "forbidden crate edges (docs/architecture.md, \"Dependency rules\"):\n  {}",
        forbidden.join("\n  ")
    );
}

#[test]
fn no_module_imports_form_a_cycle() {
    let mut cycles = Vec::new();
    for krate in workspace_crates() {
        let graph = ModuleGraph::read(&krate.dir.join("src"));
        for cycle in graph.cycles() {
            cycles.push(format!("{}: {}", krate.name, cycle));
        }
    }
    assert!(
        cycles.is_empty(),
        "module import cycles:\n  {}",
        cycles.join("\n  ")
    );
}

/// A crate's modules and, for every module directory, which child module uses which sibling.
struct ModuleGraph {
    modules: BTreeSet<Vec<String>>,
    /// (parent, from child, to child) → the file that makes the edge.
    edges: BTreeMap<(Vec<String>, String, String), PathBuf>,
}

impl ModuleGraph {
    fn read(src: &Path) -> ModuleGraph {
        let files = rust_files(src);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(src, f)).collect();
        let mut graph = ModuleGraph {
            modules,
            edges: BTreeMap::new(),
        };
        for file in &files {
            let from = module_path(src, file);
            let text = std::fs::read_to_string(file).unwrap();
            for target in referenced_paths(&production_code(&text), &from) {
                graph.add_edge(&from, &target, file);
            }
        }
        graph
    }

    /// `from` uses `target`: an edge between the two children of their deepest common module,
    /// when both children are modules (a child using its parent's items is no edge).
    fn add_edge(&mut self, from: &[String], target: &[String], file: &Path) {
        let common = from.iter().zip(target).take_while(|(a, b)| a == b).count();
        let (Some(from_child), Some(to_child)) = (from.get(common), target.get(common)) else {
            return;
        };
        let parent = from[..common].to_vec();
        let mut sibling = parent.clone();
        sibling.push(to_child.clone());
        if self.modules.contains(&sibling) {
            self.edges
                .entry((parent, from_child.clone(), to_child.clone()))
                .or_insert_with(|| file.to_path_buf());
        }
    }

    /// Every strongly connected set of two or more siblings, written as its edges.
    fn cycles(&self) -> Vec<String> {
        let parents: BTreeSet<&Vec<String>> = self.edges.keys().map(|(p, _, _)| p).collect();
        let mut found = Vec::new();
        for parent in parents {
            let next: BTreeMap<&str, Vec<&str>> = self
                .edges
                .keys()
                .filter(|(p, _, _)| p == parent)
                .fold(BTreeMap::new(), |mut next, (_, from, to)| {
                    next.entry(from.as_str()).or_default().push(to.as_str());
                    next
                });
            for component in strongly_connected(&next) {
                let inside: Vec<String> = self
                    .edges
                    .iter()
                    .filter(|((p, from, to), _)| {
                        p == parent
                            && component.contains(from.as_str())
                            && component.contains(to.as_str())
                    })
                    .map(|((_, from, to), file)| format!("{from} -> {to} ({})", file.display()))
                    .collect();
                let at = if parent.is_empty() {
                    "crate".to_string()
                } else {
                    parent.join("::")
                };
                found.push(format!("in {at}: {}", inside.join(", ")));
            }
        }
        found
    }
}

/// Tarjan's algorithm, keeping components of more than one module.
fn strongly_connected<'a>(next: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<BTreeSet<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<&'a str>>,
    }
    fn visit<'a>(node: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for &to in next.get(node).map(Vec::as_slice).unwrap_or_default() {
            if !s.index.contains_key(to) {
                visit(to, next, s);
                let low = s.low[node].min(s.low[to]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(to) {
                let low = s.low[node].min(s.index[to]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.insert(top);
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                s.components.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in next.keys() {
        if !state.index.contains_key(node) {
            visit(node, next, &mut state);
        }
    }
    state.components
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` and `src/main.rs` are the root.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file without its `#[cfg(test)]` modules (a test may reach anywhere) and without comments
/// (a doc link is no dependency).
fn production_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The absolute module paths a file names through `crate::` and `super::` (use groups expanded to
/// their first segment, which is all a sibling edge needs).
fn referenced_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    // In `a/b.rs` and in `a/b/mod.rs` (module a::b) `super` is `a`. `super` inside inline modules
    // is rare outside tests, which are cut.
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded_by_ident {
                continue;
            }
            for tail in path_tails(rest) {
                let mut path = base.clone();
                path.extend(tail);
                paths.push(path);
            }
        }
    }
    paths
}

/// The paths after `crate::` at the start of `text`: `a::b::C` gives `[a, b, C]`; a group
/// `{a::{X, Y}, b}` gives `[a, X]`, `[a, Y]` and `[b]`.
fn path_tails(text: &str) -> Vec<Vec<String>> {
    if let Some(group) = text.strip_prefix('{') {
        let end = closing_brace(group);
        return split_top_level(&group[..end])
            .into_iter()
            .flat_map(|item| path_tails(item.trim()))
            .collect();
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return Vec::new();
    }
    let Some(rest) = text[ident.len()..].strip_prefix("::") else {
        return vec![vec![ident]];
    };
    let tails = path_tails(rest);
    if tails.is_empty() {
        return vec![vec![ident]];
    }
    tails
        .into_iter()
        .map(|tail| std::iter::once(ident.clone()).chain(tail).collect())
        .collect()
}

/// The index of the `}` that closes a group whose `{` was just before `group`.
fn closing_brace(group: &str) -> usize {
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    group.len()
}

fn split_top_level(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .collect()
}

#[test]
fn paths_are_read_from_use_groups_and_qualified_names() {
    assert_eq!(path_tails("plan::Plan;"), vec![vec!["plan", "Plan"]]);
    assert_eq!(
        path_tails("{plan::{Plan, Job}, library};"),
        vec![vec!["plan", "Plan"], vec!["plan", "Job"], vec!["library"]]
    );
    let module = vec!["prompt".to_string(), "resolve".to_string()];
    let found = referenced_paths(
        "use super::parse::Tokens;\nlet x = crate::plan::make();",
        &module,
    );
    assert_eq!(
        found,
        vec![vec!["plan", "make"], vec!["prompt", "parse", "Tokens"]]
    );
}

#[test]
fn a_cycle_between_siblings_is_found_and_a_child_using_its_parent_is_not() {
    let modules: BTreeSet<Vec<String>> =
        [vec![], vec!["a".into()], vec!["b".into()], vec!["c".into()]].into();
    let mut graph = ModuleGraph {
        modules,
        edges: BTreeMap::new(),
    };
    let file = Path::new("x.rs");
    graph.add_edge(&["a".into()], &["b".into(), "X".into()], file);
    graph.add_edge(&["b".into()], &["a".into(), "Y".into()], file);
    graph.add_edge(&["c".into()], &["a".into()], file);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("a -> b") && cycles[0].contains("b -> a"));
}

/// docs/architecture.md's tree names every workspace crate and every top module of each, and nothing
/// that is gone: a crate is a line `dir/` at the start of a line, its modules the indented lines
/// `src/name.rs` or `src/name/` below it (the binary's own modules: `src/…` at the start of a line).
#[test]
fn the_documented_tree_matches_the_crates_and_their_top_modules() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/architecture.md")).unwrap();
    let documented = documented_tree(&doc);
    let mut mismatches = Vec::new();
    for krate in workspace_crates() {
        let relative = krate
            .dir
            .strip_prefix(workspace_root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let actual = top_modules(&krate.dir.join("src"));
        let listed = documented.get(&relative).cloned().unwrap_or_default();
        if !relative.is_empty() && !documented.contains_key(&relative) {
            mismatches.push(format!("crate {relative}/ is not in the tree"));
        }
        for missing in actual.difference(&listed) {
            mismatches.push(format!("{relative}/src/{missing} is not in the tree"));
        }
        for gone in listed.difference(&actual) {
            mismatches.push(format!(
                "the tree lists {relative}/src/{gone}, which does not exist"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "docs/architecture.md, \"The tree\", is out of date:\n  {}",
        mismatches.join("\n  ")
    );
}

/// Crate directory (relative, "" for the binary) → its listed top modules (`name.rs`, `name/`).
fn documented_tree(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let block = doc
        .split("## The tree")
        .nth(1)
        .and_then(|section| section.split("```").nth(1))
        .expect("docs/architecture.md has a \"## The tree\" section with a code block");
    let mut tree: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in block.lines() {
        let indented = line.starts_with(' ');
        let Some(token) = line.split_whitespace().next() else {
            continue;
        };
        match (indented, token.strip_prefix("src/")) {
            (false, Some(module)) => {
                current = None;
                tree.entry(String::new())
                    .or_default()
                    .insert(module.to_string());
            }
            (false, None) if token.ends_with('/') && !token.contains('.') => {
                let dir = token.trim_end_matches('/').to_string();
                tree.entry(dir.clone()).or_default();
                current = Some(dir);
            }
            (false, None) => current = None,
            (true, Some(module)) => {
                if let Some(dir) = &current {
                    tree.get_mut(dir).unwrap().insert(module.to_string());
                }
            }
            (true, None) => {}
        }
    }
    tree
}

fn top_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                Some(format!("{name}/"))
            } else if name.ends_with(".rs") && !matches!(name.as_str(), "lib.rs" | "main.rs") {
                Some(name)
            } else {
                None
            }
        })
        .collect()
}
