//! The house rules of who may use whom, checked on the source: the egui side never names tokio,
//! redis or sockets; the pure model names no I/O at all; the monitor watches nodes from the
//! outside, never through `hub` internals.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// Code lines only (comments and doc comments may mention anything).
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

fn assert_absent(dir: &str, forbidden: &[&str]) {
    for (file, text) in sources(dir) {
        for (n, line) in code(&text) {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{file}:{n} names `{word}`, which {dir} must not use: {line}"
                );
            }
        }
    }
}

#[test]
fn the_ui_never_names_tokio_redis_or_sockets() {
    assert_absent(
        "src/ui",
        &[
            "tokio",
            "redis::",
            "TcpStream",
            "UdpSocket",
            "std::net",
            "block_on",
            "blocking_send",
            "thread::sleep",
            "crate::client",
        ],
    );
}

#[test]
fn the_model_is_pure() {
    assert_absent(
        "src/monitor/model",
        &[
            "tokio",
            "redis::",
            "std::net",
            "SystemTime::now",
            "Instant::now",
            "std::fs",
        ],
    );
}

#[test]
fn the_monitor_watches_nodes_from_the_outside() {
    assert_absent("src/monitor", &["crate::hub", "egui"]);
}

#[test]
fn the_backplane_never_sees_hub_monitor_or_ui() {
    assert_absent(
        "src/backplane",
        &["crate::hub", "crate::monitor", "crate::ui", "egui"],
    );
}

// ---- The crate map and the file graph, from the parsed source ----------------------------------

use std::collections::{BTreeMap, BTreeSet};
use syn::visit::Visit;

/// A source file under `src/` as a module path: `src/monitor/model/health.rs` is
/// `["monitor", "model", "health"]`, `src/monitor/mod.rs` is `["monitor"]`, `src/lib.rs` is `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Whether an item is compiled only for tests (`#[cfg(test)]`): its imports are not layering.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| matches!(&m, syn::Meta::Path(p) if p.is_ident("test")))
    })
}

/// Collects every crate-relative path one file names (in `use` trees and in code), resolved to
/// absolute module paths.
struct Refs<'m> {
    /// The module the visitor is in: the file's, plus inline `mod x { }` names.
    here: Vec<String>,
    /// Every file module of the crate: a path that starts with a child module's name
    /// (`model::health::x` in `monitor/mod.rs`) is relative to the module it is in.
    modules: &'m BTreeSet<Vec<String>>,
    out: BTreeSet<Vec<String>>,
}

impl Refs<'_> {
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let (mut base, rest) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.here.clone(), &segments[1..]),
            "super" => (self.here.clone(), segments),
            _ => {
                let mut child = self.here.clone();
                child.push(first.clone());
                if !self.modules.contains(&child) {
                    return None;
                }
                (self.here.clone(), segments)
            }
        };
        let mut rest = rest;
        while rest.first().is_some_and(|s| s == "super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) if n.ident == "self" => self.add(prefix),
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.add(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn add(&mut self, segments: &[String]) {
        if let Some(abs) = self.resolve(segments) {
            self.out.insert(abs);
        }
    }
}

/// `a::b::c` paths in a macro's tokens (`format!("{}", super::traffic::hms_utc(t))`): syn
/// does not parse macro arguments, so their paths are read off the token stream.
fn macro_paths(tokens: &syn::Macro) -> Vec<Vec<String>> {
    fn walk(mut c: syn::buffer::Cursor, out: &mut Vec<Vec<String>>) {
        while !c.eof() {
            if let Some((ident, mut next)) = c.ident() {
                let mut path = vec![ident.to_string()];
                while let Some((p1, n1)) = next.punct()
                    && let Some((p2, n2)) = n1.punct()
                    && let Some((id, n3)) = n2.ident()
                    && p1.as_char() == ':'
                    && p2.as_char() == ':'
                {
                    path.push(id.to_string());
                    next = n3;
                }
                if path.len() > 1 {
                    out.push(path);
                }
                c = next;
            } else if let Some((inner, _, _, next)) = c.any_group() {
                walk(inner, out);
                c = next;
            } else if let Some((_, next)) = c.token_tree() {
                c = next;
            } else {
                break;
            }
        }
    }
    let buffer = syn::buffer::TokenBuffer::new2(tokens.tokens.clone());
    let mut out = Vec::new();
    walk(buffer.begin(), &mut out);
    out
}

impl<'a> Visit<'a> for Refs<'_> {
    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        for path in macro_paths(mac) {
            self.add(&path);
        }
        syn::visit::visit_macro(self, mac);
    }

    fn visit_item_use(&mut self, item: &'a syn::ItemUse) {
        if !test_only(&item.attrs) {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_item_mod(&mut self, item: &'a syn::ItemMod) {
        if test_only(&item.attrs) {
            return;
        }
        self.here.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.here.pop();
    }

    fn visit_item_fn(&mut self, item: &'a syn::ItemFn) {
        if !test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_item_impl(&mut self, item: &'a syn::ItemImpl) {
        if !test_only(&item.attrs) {
            syn::visit::visit_item_impl(self, item);
        }
    }

    fn visit_path(&mut self, path: &'a syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.add(&segments);
        syn::visit::visit_path(self, path);
    }
}

/// Every file of the library (not `main.rs`, the binary's wrapper) with the files it uses.
struct Graph {
    /// module path → file (relative to `src/`).
    files: BTreeMap<Vec<String>, String>,
    /// file → files it names (never itself).
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph_of(src: &Path) -> Graph {
    let mut parsed = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(src).unwrap().to_path_buf();
                if rel == Path::new("main.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                parsed.push((rel, file));
            }
        }
    }
    let files: BTreeMap<Vec<String>, String> = parsed
        .iter()
        .map(|(rel, _)| (module_path(rel), rel.display().to_string()))
        .collect();
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (rel, file) in &parsed {
        let here = module_path(rel);
        let me = rel.display().to_string();
        let mut refs = Refs {
            here: here.clone(),
            modules: &modules,
            out: BTreeSet::new(),
        };
        refs.visit_file(file);
        let mut used = BTreeSet::new();
        for path in refs.out {
            // The longest prefix of the path that is a file: the file that declares (or
            // re-exports) the item.
            let target = (0..=path.len())
                .rev()
                .find_map(|n| files.get(&path[..n]))
                .cloned();
            // A module's own file naming its submodules (declaring them, re-exporting their
            // items) is how a module is put together, not a dependency: only arrows that leave
            // the file's own subtree count.
            let target = target.filter(|t| *t != me && !descendant(&here, &module_path(Path::new(t))));
            if let Some(target) = target {
                used.insert(target);
            }
        }
        edges.insert(me, used);
    }
    Graph { files, edges }
}

/// Whether module `b` is inside module `a` (`a` a strict prefix of `b`).
fn descendant(a: &[String], b: &[String]) -> bool {
    b.len() > a.len() && b.starts_with(a)
}

/// The layer of a file: its top-level module (`lib` for `lib.rs`).
fn layer(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_string()
}

/// The `may use` table in the `//!` docs of `lib.rs`: the block between the lines
/// "```text" and "```" after "Who may use whom, exactly", each line `layer: dep dep …`.
fn crate_map(lib: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut map = BTreeMap::new();
    let mut in_block = false;
    let mut seen_heading = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("Who may use whom, exactly") {
            seen_heading = true;
        } else if seen_heading && doc == "```text" {
            in_block = true;
        } else if in_block && doc == "```" {
            break;
        } else if in_block {
            let (name, deps) = doc
                .split_once(':')
                .unwrap_or_else(|| panic!("lib.rs crate map: '{doc}' is not 'layer: deps'"));
            map.insert(
                name.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            );
        }
    }
    assert!(!map.is_empty(), "lib.rs has no 'Who may use whom, exactly' table");
    map
}

/// The layer-to-layer arrows in the graph, each with one file-level example.
fn layer_edges(graph: &Graph) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (from, tos) in &graph.edges {
        for to in tos {
            let (a, b) = (layer(from), layer(to));
            if a != b && a != "lib" && b != "lib" {
                out.entry((a, b)).or_insert_with(|| format!("{from} → {to}"));
            }
        }
    }
    out
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(tos) = s.edges.get(v) {
            for w in tos {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Everything wrong with a graph against a crate map, one line each.
fn violations(graph: &Graph, map: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let layers: BTreeSet<String> = graph
        .files
        .values()
        .map(|f| layer(f))
        .filter(|l| l != "lib")
        .collect();
    for l in &layers {
        if !map.contains_key(l) {
            out.push(format!("module `{l}` has no line in lib.rs's crate map"));
        }
    }
    for (l, deps) in map {
        if !layers.contains(l) {
            out.push(format!("lib.rs's crate map names `{l}`, which is not a module"));
        }
        for d in deps {
            if !layers.contains(d) {
                out.push(format!(
                    "lib.rs's crate map lets `{l}` use `{d}`, which is not a module"
                ));
            }
        }
    }
    let actual = layer_edges(graph);
    for ((from, to), example) in &actual {
        if !map.get(from).is_some_and(|deps| deps.contains(to)) {
            out.push(format!(
                "`{from}` uses `{to}`, which lib.rs's crate map forbids ({example})"
            ));
        }
    }
    for (from, deps) in map {
        for to in deps {
            if !actual.contains_key(&(from.clone(), to.clone())) {
                out.push(format!(
                    "lib.rs's crate map lets `{from}` use `{to}`, but it does not: take it out of the map"
                ));
            }
        }
    }
    for scc in cycles(&graph.edges) {
        out.push(format!("import cycle between files: {}", scc.join(" ↔ ")));
    }
    out
}

#[test]
fn the_crate_map_is_the_real_one_and_files_have_no_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph_of(&root.join("src"));
    let map = crate_map(&std::fs::read_to_string(root.join("src/lib.rs")).unwrap());
    let found = violations(&graph, &map);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker fails on what it exists for: an upward arrow, a cycle between two files, a map
/// line for a module that is gone, and an arrow the map allows but nobody uses.
#[test]
fn the_layering_check_can_fail() {
    let graph = |edges: &[(&str, &str)]| {
        let mut files = BTreeMap::new();
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in [
            "protocol/mod.rs",
            "protocol/frame.rs",
            "hub/mod.rs",
            "hub/registry.rs",
        ] {
            files.insert(module_path(Path::new(f)), f.to_string());
            map.entry(f.to_string()).or_default();
        }
        for (a, b) in edges {
            map.entry(a.to_string()).or_default().insert(b.to_string());
        }
        Graph { files, edges: map }
    };
    let map = |lines: &str| {
        crate_map(&format!(
            "//! Who may use whom, exactly:\n//! ```text\n{}//! ```\n",
            lines.lines().map(|l| format!("//! {l}\n")).collect::<String>()
        ))
    };
    let good = map("protocol:\nhub: protocol");
    let sound = graph(&[("hub/registry.rs", "protocol/frame.rs")]);
    assert_eq!(violations(&sound, &good), Vec::<String>::new());

    let upward = graph(&[
        ("hub/registry.rs", "protocol/frame.rs"),
        ("protocol/frame.rs", "hub/mod.rs"),
    ]);
    let found = violations(&upward, &good);
    assert!(
        found.iter().any(|v| v.contains("`protocol` uses `hub`")),
        "{found:?}"
    );

    let cycle = graph(&[
        ("hub/registry.rs", "protocol/frame.rs"),
        ("hub/mod.rs", "hub/registry.rs"),
        ("hub/registry.rs", "hub/mod.rs"),
    ]);
    let found = violations(&cycle, &good);
    assert!(
        found
            .iter()
            .any(|v| v == "import cycle between files: hub/mod.rs ↔ hub/registry.rs"),
        "{found:?}"
    );

    let stale = map("protocol:\nhub: protocol\ngone: protocol");
    let found = violations(&sound, &stale);
    assert!(found.iter().any(|v| v.contains("names `gone`")), "{found:?}");

    let unused = map("protocol: hub\nhub: protocol");
    let found = violations(&sound, &unused);
    assert!(
        found
            .iter()
            .any(|v| v.contains("lets `protocol` use `hub`, but it does not")),
        "{found:?}"
    );
}

/// The parser sees real imports: `use` trees with groups and `super`, paths in code, and not
/// what a `#[cfg(test)]` module imports.
#[test]
fn imports_are_read_from_the_syntax() {
    let file: syn::File = syn::parse_str(
        "use super::{tap::Batcher, model::{self, entry::hms}};\n\
         use crate::config;\n\
         fn f() { let _ = crate::hub::registry::Registry::new(); }\n\
         fn g() -> String { format!(\"{}\", super::traffic::hms_utc(0)) }\n\
         fn h() { let _ = census::walk(); }\n\
         #[cfg(test)] mod tests { use crate::ui::App; }\n",
    )
    .unwrap();
    let modules = BTreeSet::from([vec![
        "monitor".to_string(),
        "shard_tap".to_string(),
        "census".to_string(),
    ]]);
    let mut refs = Refs {
        here: vec!["monitor".into(), "shard_tap".into()],
        modules: &modules,
        out: BTreeSet::new(),
    };
    refs.visit_file(&file);
    let got: BTreeSet<String> = refs.out.iter().map(|p| p.join("::")).collect();
    for want in [
        "monitor::tap::Batcher",
        "monitor::model",
        "monitor::model::entry::hms",
        "config",
        "hub::registry::Registry::new",
        "monitor::traffic::hms_utc",
        "monitor::shard_tap::census::walk",
    ] {
        assert!(got.contains(want), "{want} not in {got:?}");
    }
    assert!(!got.iter().any(|p| p.starts_with("ui")), "{got:?}");
}

#[test]
fn the_agent_is_headless_and_watches_from_the_outside() {
    assert_absent(
        "src/agent",
        &["crate::hub", "crate::ui", "crate::link", "egui", "eframe"],
    );
}
