//! No module imports a module that imports it back: the crate's modules form layers, so each can
//! be read, tested and moved knowing only what lies below it.
//!
//! The rule, precisely. Every `crate::…`, `super::…` and `self::…` path in the code (in `use`
//! trees, grouped forms included, in inline paths, and in attribute strings such as serde's
//! `deserialize_with = "super::duration::lenient"`) is an edge from the module it is written in
//! (inline `mod tests { … }` counted as a module of its own) to the deepest module the path
//! names: `crate::cloud::CloudError` is an edge to `cloud`, `crate::cloud::client::CloudClient`
//! one to `cloud::client`. Comments and doc links are not edges; paths that start with a bare
//! name (a child module or another crate) are not either.
//!
//! - An edge between a module and its ancestor or descendant is allowed: a parent uses its
//!   children and a child uses what its parent holds, as Rust intends (`controller::task` uses
//!   `controller::Context`; `controller` runs `controller::task`).
//! - Any other edge, from `a::x::…` to `a::y::…`, makes the sibling `a::x` depend on the sibling
//!   `a::y` (at the top, `budget` on `telemetry`). Within each module, its children's
//!   dependencies must have no cycle: no two siblings depend on each other, nor do three or more
//!   in a ring (found as strongly connected components).
//!
//! Each `src/` tree is one crate: `src/` itself (the library; `main.rs`, a separate crate that
//! only calls the library, is skipped) and, if the directory exists, every `crates/*/src/`.
//! `#[path]` attributes and `include!` are not followed: the crate uses neither.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Circles known and owned elsewhere, each as the sorted set of sibling modules in it, with the
/// reason it is tolerated. An entry no longer matching a circle fails the test: delete it.
const KNOWN_CIRCLES: &[(&[&str], &str)] = &[];

type Module = Vec<String>;

/// One path in the code, and where it is written.
#[derive(Clone, Debug)]
struct Reference {
    from: Module,
    path: Vec<String>,
    file: String,
    line: usize,
}

/// A crate's modules and the paths written in them.
#[derive(Debug, Default)]
struct Crate {
    modules: BTreeSet<Module>,
    references: Vec<Reference>,
}

/// `controller/account/resolver.rs` -> `controller::account::resolver`; `a/mod.rs` -> `a`;
/// `lib.rs` -> the root.
fn module_of_file(relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.strip_suffix(".rs").unwrap_or(&file);
    if !(stem == "mod" || (parts.is_empty() && stem == "lib")) {
        parts.push(stem.to_string());
    }
    parts
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// Builds a crate from its files: (path relative to its `src/`, text).
fn parse_crate(files: &[(PathBuf, String)]) -> Crate {
    let mut krate = Crate::default();
    for (relative, text) in files {
        let module = module_of_file(relative);
        let mut prefix = module.clone();
        while !prefix.is_empty() {
            krate.modules.insert(prefix.clone());
            prefix.pop();
        }
        krate.modules.insert(Vec::new());
        scan_file(&module, &relative.display().to_string(), text, &mut krate);
    }
    krate
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(&'static str),
    Other(char),
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a string literal's text is a path worth following (serde's `with` attributes).
fn is_path_text(text: &str) -> bool {
    let mut segments = text.split("::");
    matches!(segments.next(), Some("crate" | "super" | "self"))
        && text.contains("::")
        && segments.all(|s| !s.is_empty() && s.chars().all(is_ident_char))
}

/// Tokens with their line numbers: comments dropped, string and char literals dropped unless
/// the string is a path, lifetimes dropped.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let count_lines =
        |from: usize, to: usize| chars[from..to].iter().filter(|&&c| c == '\n').count();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let previous_is_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(start, i);
        } else if !previous_is_ident && (c == 'r' || c == 'b') && raw_or_byte_string(&chars, i) {
            // r"…", r#"…"#, b"…", br#"…"#: find the quote and the number of hashes.
            let start = i;
            let mut j = i;
            if chars[j] == 'b' {
                j += 1;
            }
            let raw = chars[j] == 'r';
            if raw {
                j += 1;
            }
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let body_start = j;
            loop {
                if j >= chars.len() {
                    break;
                }
                if !raw && chars[j] == '\\' {
                    j += 2;
                    continue;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            let body: String = chars[body_start..j.min(chars.len())].iter().collect();
            push_string(&mut tokens, &body, line);
            i = (j + 1 + hashes).min(chars.len());
            line += count_lines(start, i);
        } else if c == '"' {
            let start = i;
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let body: String = chars[start + 1..j.min(chars.len())].iter().collect();
            push_string(&mut tokens, &body, line);
            i = (j + 1).min(chars.len());
            line += count_lines(start, i);
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // r#type: a raw identifier.
            tokens.push((Token::Ident(word), line));
        } else if c == ':' && next == Some(':') {
            tokens.push((Token::Punct("::"), line));
            i += 2;
        } else {
            let punct = match c {
                '{' => Some("{"),
                '}' => Some("}"),
                ',' => Some(","),
                ';' => Some(";"),
                '*' => Some("*"),
                _ => None,
            };
            tokens.push((punct.map_or(Token::Other(c), Token::Punct), line));
            i += 1;
        }
    }
    tokens
}

fn raw_or_byte_string(chars: &[char], i: usize) -> bool {
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
        if chars.get(j) == Some(&'"') {
            return true;
        }
    }
    if chars.get(j) != Some(&'r') {
        return false;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// A string literal that is a path becomes the path's tokens; any other is dropped.
fn push_string(tokens: &mut Vec<(Token, usize)>, body: &str, line: usize) {
    if is_path_text(body) {
        for (n, segment) in body.split("::").enumerate() {
            if n > 0 {
                tokens.push((Token::Punct("::"), line));
            }
            tokens.push((Token::Ident(segment.to_string()), line));
        }
    }
}

fn ident(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Ident(word), _)) => Some(word),
        _ => None,
    }
}

fn punct(tokens: &[(Token, usize)], i: usize, p: &str) -> bool {
    matches!(tokens.get(i), Some((Token::Punct(q), _)) if *q == p)
}

/// Parses a use tree from `*i` (just after `use`), up to and including its `;`: every full path
/// it names, with a glob's or a group's `self` naming its prefix.
fn parse_use_tree(tokens: &[(Token, usize)], i: &mut usize, prefix: &[String]) -> Vec<Vec<String>> {
    let mut path = prefix.to_vec();
    let mut paths = Vec::new();
    if punct(tokens, *i, "::") {
        // `use ::std::…`: another crate.
        *i += 1;
        path.push("::".to_string());
    }
    loop {
        if let Some(word) = ident(tokens, *i) {
            // `{self, …}` in a group names the group's prefix itself.
            if !(word == "self" && !prefix.is_empty() && path.len() == prefix.len()) {
                path.push(word.to_string());
            }
            *i += 1;
            if punct(tokens, *i, "::") {
                *i += 1;
                continue;
            }
            if ident(tokens, *i) == Some("as") {
                *i += 2;
            }
            paths.push(path);
            return paths;
        }
        if punct(tokens, *i, "*") {
            *i += 1;
            paths.push(path);
            return paths;
        }
        if punct(tokens, *i, "{") {
            *i += 1;
            loop {
                if punct(tokens, *i, "}") {
                    *i += 1;
                    break;
                }
                if punct(tokens, *i, ",") {
                    *i += 1;
                    continue;
                }
                if *i >= tokens.len() {
                    break;
                }
                let before = *i;
                paths.extend(parse_use_tree(tokens, i, &path));
                if *i == before {
                    *i += 1;
                }
            }
            return paths;
        }
        return paths;
    }
}

/// Walks a file's tokens, tracking inline `mod name { … }` blocks, and records its modules and
/// references into `krate`.
fn scan_file(module: &Module, file: &str, text: &str, krate: &mut Crate) {
    let tokens = tokenize(text);
    // One entry per open brace: the inline module it opened, if any.
    let mut braces: Vec<Option<String>> = Vec::new();
    let current = |braces: &[Option<String>]| {
        let mut m = module.clone();
        m.extend(braces.iter().flatten().cloned());
        m
    };
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].1;
        if ident(&tokens, i) == Some("mod")
            && let Some(name) = ident(&tokens, i + 1)
            && punct(&tokens, i + 2, "{")
        {
            braces.push(Some(name.to_string()));
            krate.modules.insert(current(&braces));
            i += 3;
        } else if punct(&tokens, i, "{") {
            braces.push(None);
            i += 1;
        } else if punct(&tokens, i, "}") {
            braces.pop();
            i += 1;
        } else if ident(&tokens, i) == Some("use") {
            i += 1;
            let from = current(&braces);
            for path in parse_use_tree(&tokens, &mut i, &[]) {
                if matches!(
                    path.first().map(String::as_str),
                    Some("crate" | "super" | "self")
                ) {
                    krate.references.push(Reference {
                        from: from.clone(),
                        path,
                        file: file.to_string(),
                        line,
                    });
                }
            }
        } else if matches!(ident(&tokens, i), Some("crate" | "super" | "self"))
            && punct(&tokens, i + 1, "::")
            && !(i > 0 && punct(&tokens, i - 1, "::"))
        {
            let mut path = vec![ident(&tokens, i).unwrap().to_string()];
            i += 1;
            while punct(&tokens, i, "::")
                && let Some(word) = ident(&tokens, i + 1)
            {
                path.push(word.to_string());
                i += 2;
            }
            krate.references.push(Reference {
                from: current(&braces),
                path,
                file: file.to_string(),
                line,
            });
        } else {
            i += 1;
        }
    }
}

/// The deepest module a path names, or None if it leaves the crate.
fn resolve(krate: &Crate, from: &[String], path: &[String]) -> Option<Module> {
    let mut base: Module = from.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {}
        _ => return None,
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop()?;
        rest = &rest[1..];
    }
    for segment in rest {
        let mut deeper = base.clone();
        deeper.push(segment.clone());
        if !krate.modules.contains(&deeper) {
            break;
        }
        base = deeper;
    }
    Some(base)
}

/// A dependency of one sibling on another, with the reference that makes it.
#[derive(Clone, Debug)]
struct SiblingEdge {
    from: Module,
    to: Module,
    witness: Reference,
    target: Module,
}

fn sibling_edges(krate: &Crate) -> Vec<SiblingEdge> {
    let mut edges = Vec::new();
    for reference in &krate.references {
        let Some(target) = resolve(krate, &reference.from, &reference.path) else {
            continue;
        };
        let from = &reference.from;
        if from.starts_with(&target) || target.starts_with(from) {
            continue;
        }
        let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
        edges.push(SiblingEdge {
            from: from[..=common].to_vec(),
            to: target[..=common].to_vec(),
            witness: reference.clone(),
            target: target.clone(),
        });
    }
    edges
}

/// Every circle: the strongly connected components (Tarjan) of the sibling graph with more than
/// one module, each as its sorted modules and one ring through them, each hop with a witness.
fn circles(krate: &Crate) -> Vec<(Vec<String>, String)> {
    let edges = sibling_edges(krate);
    let mut graph: BTreeMap<Module, BTreeMap<Module, SiblingEdge>> = BTreeMap::new();
    for edge in edges {
        graph.entry(edge.to.clone()).or_default();
        graph
            .entry(edge.from.clone())
            .or_default()
            .entry(edge.to.clone())
            .or_insert(edge);
    }

    struct Tarjan<'a> {
        graph: &'a BTreeMap<Module, BTreeMap<Module, SiblingEdge>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        components: Vec<Vec<Module>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &Module) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            for w in self.graph[v].keys() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().expect("on the stack");
                    self.on_stack.remove(&w);
                    let done = &w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan = Tarjan {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }

    let mut found = Vec::new();
    for mut component in tarjan.components.into_iter().filter(|c| c.len() > 1) {
        component.sort();
        let members: BTreeSet<&Module> = component.iter().collect();
        // The shortest ring from the first module back to itself, by breadth-first search.
        let start = &component[0];
        let mut came_from: BTreeMap<&Module, &Module> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(v) = queue.pop_front() {
            for w in graph[v].keys().filter(|w| members.contains(w)) {
                if w == start {
                    came_from.insert(start, v);
                    break 'search;
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut ring = vec![start];
        let mut at = came_from[start];
        while at != start {
            ring.push(at);
            at = came_from[at];
        }
        ring.push(start);
        ring.reverse();
        let mut text = String::new();
        for hop in ring.windows(2) {
            let edge = &graph[hop[0]][hop[1]];
            let _ = writeln!(
                text,
                "  {} -> {}: {}:{} in {} refers to {} (`{}`)",
                display(&edge.from),
                display(&edge.to),
                edge.witness.file,
                edge.witness.line,
                display(&edge.witness.from),
                display(&edge.target),
                edge.witness.path.join("::"),
            );
        }
        found.push((component.iter().map(|m| display(m)).collect(), text));
    }
    found
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        if path.is_dir() {
            if relative != Path::new("bin") {
                rust_files(&path, root, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && relative != Path::new("main.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((relative, text));
        }
    }
}

fn crate_roots() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![manifest.join("src")];
    if let Ok(entries) = std::fs::read_dir(manifest.join("crates")) {
        let mut more: Vec<_> = entries
            .map(|e| e.unwrap().path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        more.sort();
        roots.extend(more);
    }
    roots
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut failures = String::new();
    let mut known_seen = BTreeSet::new();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for root in crate_roots() {
        let shown = root
            .strip_prefix(manifest)
            .unwrap_or(&root)
            .display()
            .to_string();
        let mut files = Vec::new();
        rust_files(&root, &root, &mut files);
        let krate = parse_crate(&files);
        // The operator has hundreds; the signing crate, one file and a module, a handful.
        let minimum = if root == manifest.join("src") { 20 } else { 1 };
        assert!(
            krate.references.len() >= minimum,
            "{shown}: only {} references found; is the scanner broken?",
            krate.references.len()
        );
        for (members, ring) in circles(&krate) {
            if let Some(n) = KNOWN_CIRCLES
                .iter()
                .position(|(known, _)| known.iter().copied().eq(members.iter().map(String::as_str)))
            {
                known_seen.insert(n);
                continue;
            }
            let _ = writeln!(
                failures,
                "{shown}: a circle among {}:\n{ring}",
                members.join(", ")
            );
        }
    }
    for (n, (known, why)) in KNOWN_CIRCLES.iter().enumerate() {
        if !known_seen.contains(&n) {
            let _ = writeln!(
                failures,
                "KNOWN_CIRCLES lists {} ({why}), which is no longer a circle: delete the entry",
                known.join(", ")
            );
        }
    }
    assert!(
        failures.is_empty(),
        "modules import modules that import them back (see the rule at the top of \
         tests/module_graph.rs); move what both need below both, or pass it in:\n{failures}"
    );
}

fn crate_of(files: &[(&str, &str)]) -> Crate {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect();
    parse_crate(&files)
}

fn circle_members(files: &[(&str, &str)]) -> Vec<Vec<String>> {
    circles(&crate_of(files))
        .into_iter()
        .map(|(members, _)| members)
        .collect()
}

#[test]
fn two_siblings_importing_each_other_are_a_circle() {
    let found = circle_members(&[
        ("lib.rs", "pub mod budget; pub mod telemetry;"),
        (
            "budget/mod.rs",
            "pub fn alias() -> String { crate::telemetry::hash() }",
        ),
        (
            "telemetry.rs",
            "use crate::budget::{self, View};\npub fn hash() {}",
        ),
    ]);
    assert_eq!(
        found,
        vec![vec!["budget".to_string(), "telemetry".to_string()]]
    );
}

#[test]
fn a_ring_of_three_siblings_is_a_circle_reported_hop_by_hop() {
    let krate = crate_of(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "use super::c::{Y, z::Z};"),
        ("c/mod.rs", "pub mod z;"),
        ("c/z.rs", "use crate::{a::W, b};"),
    ]);
    let found = circles(&krate);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, ["a", "b", "c"]);
    assert!(found[0].1.contains("a -> b: a.rs:1"), "{}", found[0].1);
    assert!(
        found[0].1.contains("c -> a: c/z.rs:1 in c::z refers to a"),
        "{}",
        found[0].1
    );
}

#[test]
fn nested_siblings_importing_each_other_are_a_circle_at_their_level() {
    let found = circle_members(&[
        ("lib.rs", "pub mod cloud;"),
        ("cloud/mod.rs", "pub mod client; pub mod credentials;"),
        (
            "cloud/client.rs",
            "use crate::cloud::credentials::Credentials;",
        ),
        (
            "cloud/credentials.rs",
            "fn f() { let _ = super::client::CloudClient::new(); }",
        ),
    ]);
    assert_eq!(
        found,
        vec![vec![
            "cloud::client".to_string(),
            "cloud::credentials".to_string()
        ]]
    );
}

#[test]
fn a_parent_and_its_child_using_each_other_are_no_circle() {
    let found = circle_members(&[
        ("lib.rs", "pub mod controller; pub struct Error;"),
        (
            "controller/mod.rs",
            "pub mod task; use task::run; pub struct Context; fn f() { crate::controller::task::run() }",
        ),
        (
            "controller/task.rs",
            "use super::Context; use crate::Error; pub fn run() {}",
        ),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_test_module_using_super_names_its_own_file_not_the_parent() {
    let found = circle_members(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        (
            "a.rs",
            "use crate::b::B; #[cfg(test)] mod tests { use super::*; }",
        ),
        (
            "b.rs",
            "pub struct B; #[cfg(test)] mod tests { use super::*; }",
        ),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn comments_and_plain_strings_are_no_imports_but_path_strings_are() {
    let quiet = circle_members(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a.rs", "//! See [`crate::b::B`].\nuse crate::b::B;"),
        (
            "b.rs",
            "/* crate::a::A */ fn f() -> &'static str { let _c = '\"'; \"crate::a::A is fine\" }\nconst R: &str = r#\"use crate::a;\"#;",
        ),
    ]);
    assert!(quiet.is_empty(), "{quiet:?}");
    let serde = circle_members(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a.rs", "use crate::b::B;"),
        (
            "b.rs",
            "#[serde(deserialize_with = \"crate::a::lenient\")] struct B;",
        ),
    ]);
    assert_eq!(serde, vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn file_paths_map_to_module_paths() {
    assert_eq!(module_of_file(Path::new("lib.rs")), Vec::<String>::new());
    assert_eq!(module_of_file(Path::new("telemetry.rs")), ["telemetry"]);
    assert_eq!(module_of_file(Path::new("budget/mod.rs")), ["budget"]);
    assert_eq!(
        module_of_file(Path::new("controller/account/resolver.rs")),
        ["controller", "account", "resolver"]
    );
}
