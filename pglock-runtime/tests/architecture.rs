//! The runtime's layers, checked on its sources (see `ARCHITECTURE.md`).
//!
//! Every module of `pglock-runtime/src` (the `bin/` tool excepted) has a declared
//! layer in [`LAYERS`]. A module may name (`use crate::…`, an inline `crate::…`
//! path, `super::…`) only modules of its own layer or below, and the modules of
//! one layer must not form a cycle. Comments and string literals are not read: a
//! doc link may point anywhere. `ARCHITECTURE.md` must name every file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Every module and its layer, lowest first. A new module goes here and in
/// `ARCHITECTURE.md`.
const LAYERS: &[(&str, usize)] = &[
    // 0, the ground: no I/O of their own, used by everyone.
    ("error", 0),
    ("key", 0),
    ("leadership", 0),
    ("metrics", 0),
    ("rows", 0),
    ("rt", 0),
    ("run", 0),
    ("slot", 0),
    ("sql", 0),
    ("term", 0),
    // 1, one server session and the statements run on it.
    ("wire", 1),
    ("wire::driver", 1),
    ("wire::exec", 1),
    ("wire::pooler", 1),
    ("wire::send_now", 1),
    ("wire::session", 1),
    ("wire::tls", 1),
    // 2, aliases, pools, checked-out connections, the scope connection.
    ("pool", 2),
    ("pool::config", 2),
    ("pool::conninfo", 2),
    ("pool::connection", 2),
    ("pool::frames", 2),
    ("pool::registry", 2),
    // 3, lock primitives.
    ("lock", 3),
    ("lock::advisory", 3),
    ("lock::candidate", 3),
    ("lock::heartbeat", 3),
    ("lock::holders", 3),
    ("lock::names", 3),
    ("lock::queue", 3),
    ("lock::schema", 3),
    ("lock::slot", 3),
    ("lock::terms", 3),
    ("lock::timeout", 3),
    ("lock::txn", 3),
    ("lock::waits", 3),
    ("lock::watchdog", 3),
    // 4, the scope executor.
    ("scope", 4),
    // 5, the public faces and the introspection views.
    ("api", 5),
    ("api::advisory", 5),
    ("api::blocking", 5),
    ("api::leader", 5),
    ("api::on_fail", 5),
    ("api::prioritize", 5),
    ("api::private", 5),
    ("api::schema", 5),
    ("api::shutdown", 5),
    ("api::table", 5),
    ("api::timeout", 5),
    ("inspect", 5),
    ("inspect::inspector", 5),
    ("inspect::runs", 5),
    ("inspect::terms", 5),
    ("inspect::tree", 5),
    // 6, `lib.rs`: module declarations and re-exports.
    ("crate", 6),
];

const LAYER_NAMES: [&str; 7] = [
    "ground",
    "wire",
    "pool",
    "lock",
    "scope",
    "api/inspect",
    "crate root",
];

#[test]
fn runtime_layers_are_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    assert!(files.len() > 10, "found only {} source files", files.len());
    let mut problems = check(&files, LAYERS);
    // ARCHITECTURE.md names every file (directories' `mod.rs` excepted).
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md at the repository root");
    for (path, _) in &files {
        if !path.ends_with("mod.rs") && !doc.contains(&format!("`{path}`")) {
            problems.push(format!(
                "src/{path} is not in ARCHITECTURE.md's table of layers: add it there"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "\n{} layering problem(s) in pglock-runtime/src (see ARCHITECTURE.md):\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker finds what it is meant to find (a test of the test).
#[test]
fn checker_reports_upward_imports_cycles_and_unknown_modules() {
    let layers = &[
        ("crate", 3),
        ("low", 0),
        ("mid", 1),
        ("mid::a", 1),
        ("mid::b", 1),
        ("top", 2),
    ];
    let file = |p: &str, s: &str| (p.to_owned(), s.to_owned());
    let files = vec![
        file(
            "lib.rs",
            "mod low; mod mid; mod top;\npub use top::Face;\npub use low::{Thing as Renamed};",
        ),
        file(
            "low.rs",
            "// use crate::top::Face; (a comment)\nconst S: &str = \"crate::top::X\";\nfn f() -> crate::Face { todo!() }",
        ),
        file("mid/mod.rs", "pub(crate) mod a;\npub(crate) mod b;"),
        file("mid/a.rs", "use super::b::B;\nuse crate::low::Thing;"),
        file(
            "mid/b.rs",
            "use crate::{low, mid::a::{self, A}};\nfn g(_: crate::Renamed) {}",
        ),
        file(
            "top.rs",
            "use crate::mid::a::A;\nmod tests { use super::*; }",
        ),
        file("new.rs", "use crate::low::Thing;"),
    ];
    let problems = check(&files, layers);
    let expect = [
        "src/new.rs: module `new` has no layer: add it to LAYERS in pglock-runtime/tests/architecture.rs and to ARCHITECTURE.md",
        "src/low.rs:3: `crate::Face` (re-export of `top`): `low` (layer 0, ground) uses `top` (layer 2, pool); a module uses only its own layer or below",
        "cycle among layer-1 (wire) modules: mid::a -> mid::b -> mid::a (src/mid/a.rs:1 `super::b::B`; src/mid/b.rs:1 `crate::mid::a`)",
    ];
    assert_eq!(problems, expect, "\n{}", problems.join("\n"));
}

/// Reads every `.rs` file under `dir`, skipping `src/bin/`.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).expect("under root");
        if path.is_dir() {
            if rel != Path::new("bin") {
                read_sources(root, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let rel = rel.to_str().expect("UTF-8 path").replace('\\', "/");
            out.push((rel, text));
        }
    }
}

/// `lib.rs` → `crate`, `a/mod.rs` → `a`, `a/b.rs` → `a::b`.
fn module_of(rel: &str) -> String {
    let rel = rel.strip_suffix(".rs").expect(".rs file");
    if rel == "lib" {
        return "crate".into();
    }
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    rel.replace('/', "::")
}

/// One use of another module: where, what was written, and the module it names.
#[derive(Debug, Clone)]
struct Reference {
    file: String,
    line: usize,
    text: String,
    via: Option<String>,
    from: String,
    to: String,
}

impl Reference {
    fn place(&self) -> String {
        format!("src/{}:{} `{}`", self.file, self.line, self.text)
    }
}

/// Every problem with `files` (paths relative to `src/`, and contents) under `layers`.
fn check(files: &[(String, String)], layers: &[(&str, usize)]) -> Vec<String> {
    let layer: HashMap<&str, usize> = layers.iter().copied().collect();
    let mut problems = Vec::new();
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    for (path, _) in files {
        let m = module_of(path);
        if !layer.contains_key(m.as_str()) {
            problems.push(format!(
                "src/{path}: module `{m}` has no layer: add it to LAYERS in \
                 pglock-runtime/tests/architecture.rs and to ARCHITECTURE.md"
            ));
        }
    }
    for (m, _) in layers {
        if !modules.contains(*m) {
            problems.push(format!(
                "LAYERS lists `{m}`, which has no file: remove it (and from ARCHITECTURE.md)"
            ));
        }
    }
    // What the crate root re-exports: `crate::Error` names `error`.
    let mut reexports: HashMap<String, String> = HashMap::new();
    if let Some((_, lib)) = files.iter().find(|(p, _)| p == "lib.rs") {
        for (_, path, name, _) in use_paths(&tokens(lib)) {
            if let Some(target) = resolve(&path, &["crate".to_owned()], &modules, &HashMap::new()) {
                reexports.insert(name, target.0);
            }
        }
    }
    let mut refs: Vec<Reference> = Vec::new();
    for (path, text) in files {
        let module = module_of(path);
        let toks = tokens(text);
        let mut found: Vec<(usize, Vec<String>, Vec<String>)> = Vec::new();
        for (line, segs, _, at) in use_paths(&toks) {
            found.push((line, segs, scope_of(&toks, at, &module)));
        }
        for (line, segs, at) in inline_paths(&toks) {
            found.push((line, segs, scope_of(&toks, at, &module)));
        }
        for (line, segs, scope) in found {
            let Some((to, via)) = resolve(&segs, &scope, &modules, &reexports) else {
                continue;
            };
            if to == module {
                continue;
            }
            refs.push(Reference {
                file: path.clone(),
                line,
                text: segs.join("::"),
                via,
                from: module.clone(),
                to,
            });
        }
    }
    refs.sort_by(|a, b| (&a.file, a.line, &a.text).cmp(&(&b.file, b.line, &b.text)));
    let name = |l: usize| LAYER_NAMES.get(l).copied().unwrap_or("?");
    for r in &refs {
        let (Some(&from), Some(&to)) = (layer.get(r.from.as_str()), layer.get(r.to.as_str()))
        else {
            continue;
        };
        if to > from {
            let via = match &r.via {
                Some(v) => format!(" (re-export of `{v}`)"),
                None => String::new(),
            };
            problems.push(format!(
                "src/{}:{}: `{}`{via}: `{}` (layer {from}, {}) uses `{}` (layer {to}, {}); a module uses only its own layer or below",
                r.file,
                r.line,
                r.text,
                r.from,
                name(from),
                r.to,
                name(to),
            ));
        }
    }
    // Cycles among the modules of one layer.
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Reference>> = BTreeMap::new();
    for r in &refs {
        if layer.contains_key(r.from.as_str())
            && layer.get(r.from.as_str()) == layer.get(r.to.as_str())
        {
            edges
                .entry(r.from.as_str())
                .or_default()
                .entry(r.to.as_str())
                .or_insert(r);
        }
    }
    for cycle in cycles(&edges) {
        let l = layer[cycle[0]];
        let mut names: Vec<&str> = cycle.clone();
        names.push(cycle[0]);
        let places: Vec<String> = names
            .windows(2)
            .map(|w| edges[w[0]][w[1]].place())
            .collect();
        problems.push(format!(
            "cycle among layer-{l} ({}) modules: {} ({})",
            name(l),
            names.join(" -> "),
            places.join("; ")
        ));
    }
    problems
}

/// One elementary cycle through each strongly connected component of more than
/// one module, starting from its smallest name.
fn cycles<'a>(edges: &BTreeMap<&'a str, BTreeMap<&'a str, &Reference>>) -> Vec<Vec<&'a str>> {
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(*a).chain(bs.keys().copied()))
        .collect();
    let reach = |from: &'a str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for &next in edges.get(n).into_iter().flat_map(BTreeMap::keys) {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&str, BTreeSet<&str>> = nodes.iter().map(|&n| (n, reach(n))).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in &nodes {
        if done.contains(start) || !reachable[start].contains(start) {
            continue;
        }
        let component: BTreeSet<&str> = reachable[start]
            .iter()
            .copied()
            .filter(|n| reachable[n].contains(start))
            .collect();
        done.extend(component.iter().copied());
        // Shortest path back to `start`, inside the component.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(n) = queue.pop_front() {
            for &next in edges.get(n).into_iter().flat_map(BTreeMap::keys) {
                if !component.contains(next) {
                    continue;
                }
                if next == start {
                    let mut path = vec![n];
                    while let Some(&p) = prev.get(path.last().expect("non-empty")) {
                        path.push(p);
                    }
                    path.reverse();
                    out.push(path);
                    break 'search;
                }
                if next != start && !prev.contains_key(next) {
                    prev.insert(next, n);
                    queue.push_back(next);
                }
            }
        }
    }
    out
}

/// Resolves a written path to the module it names, from inside `scope` (the
/// module path of the code, inline modules included). `None` for paths outside
/// the crate (`std::…`, `tokio::…`) and for paths that name nothing known.
/// The second value is the module a crate-root re-export was defined in.
fn resolve(
    segs: &[String],
    scope: &[String],
    modules: &BTreeSet<String>,
    reexports: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    let mut abs: Vec<String> = match segs.first().map(String::as_str) {
        Some("crate") => vec![],
        Some("super") | Some("self") => {
            let mut base: Vec<String> = scope.iter().skip(1).cloned().collect();
            let mut rest = segs;
            if rest[0] == "self" {
                rest = &rest[1..];
            }
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return lookup(&base, modules, reexports);
        }
        Some(first) => {
            // A relative path naming a child module (`use api::x` in `lib.rs`).
            let mut base: Vec<String> = scope.iter().skip(1).cloned().collect();
            base.push(first.to_owned());
            if !modules.contains(&join(&base)) {
                return None;
            }
            base.pop();
            base
        }
        None => return None,
    };
    let start = usize::from(segs[0] == "crate");
    abs.extend(segs[start..].iter().cloned());
    lookup(&abs, modules, reexports)
}

fn join(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// The longest prefix of `abs` (a path from the crate root) that is a module.
fn lookup(
    abs: &[String],
    modules: &BTreeSet<String>,
    reexports: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    for n in (1..=abs.len()).rev() {
        let m = join(&abs[..n]);
        if modules.contains(&m) {
            return Some((m, None));
        }
    }
    // A crate-root item: one of its re-exports, or something `lib.rs` defines.
    match abs.first() {
        Some(first) => match reexports.get(first) {
            Some(m) => Some((m.clone(), Some(m.clone()))),
            None if modules.contains("crate") => Some(("crate".into(), None)),
            None => None,
        },
        None => Some(("crate".into(), None)),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
}

/// The identifiers and the punctuation that matters here (`::`, `{`, `}`, `,`,
/// `;`, `*`), with line numbers; comments, strings and char literals dropped.
fn tokens(src: &str) -> Vec<(usize, Tok)> {
    let s: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    while i < s.len() {
        let c = s[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if at(i + 1) == '/' => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= s.len() {
                        break;
                    }
                    if s[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if s[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if s[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            'r' | 'b' if raw_string_start(&s, i).is_some() => {
                let (hashes, body) = raw_string_start(&s, i).expect("checked");
                i = body;
                while i < s.len() {
                    if s[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    if s[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            '"' => {
                i += 1;
                while i < s.len() && s[i] != '"' {
                    if s[i] == '\\' {
                        i += 1;
                    }
                    if at(i) == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '\'' => {
                // A char literal (`'x'`, `'\n'`, `'\u{..}'`), or a lifetime.
                if at(i + 1) == '\\' {
                    i += 2;
                    while i < s.len() && s[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == '\'' {
                    i += 3;
                } else {
                    i += 1;
                    while at(i).is_alphanumeric() || at(i) == '_' {
                        i += 1;
                    }
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push((line, Tok::Punct("::")));
                i += 2;
            }
            '{' | '}' | ',' | ';' | '*' => {
                let p = match c {
                    '{' => "{",
                    '}' => "}",
                    ',' => ",",
                    ';' => ";",
                    _ => "*",
                };
                out.push((line, Tok::Punct(p)));
                i += 1;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
                out.push((line, Tok::Ident(s[start..i].iter().collect())));
            }
            _ => i += 1,
        }
    }
    out
}

/// `r"`, `r#"`, `br"`…: the number of `#` and where the body starts.
fn raw_string_start(s: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if s.get(j) == Some(&'b') {
        j += 1;
    }
    if s.get(j) != Some(&'r') {
        return None;
    }
    if i > 0 && (s[i - 1].is_alphanumeric() || s[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while s.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (s.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

fn ident(t: &Tok) -> Option<&str> {
    match t {
        Tok::Ident(s) => Some(s),
        Tok::Punct(_) => None,
    }
}

/// Every path of every `use` declaration, expanded (`use a::{b, c::d}` gives
/// `a::b` and `a::c::d`), with its line, the name it brings in and the token
/// index of its `use`.
fn use_paths(toks: &[(usize, Tok)]) -> Vec<(usize, Vec<String>, String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if ident(&toks[i].1) == Some("use") {
            let mut j = i + 1;
            let mut prefix: Vec<Vec<String>> = vec![vec![]];
            let mut cur: Vec<String> = vec![];
            let mut line = toks[i].0;
            let mut alias: Option<String> = None;
            let flush =
                |cur: &mut Vec<String>,
                 alias: &mut Option<String>,
                 prefix: &[Vec<String>],
                 line: usize,
                 out: &mut Vec<(usize, Vec<String>, String, usize)>| {
                    if cur.is_empty() {
                        return;
                    }
                    let mut path: Vec<String> = prefix.iter().flatten().cloned().collect();
                    path.append(cur);
                    if path.last().is_some_and(|s| s == "self") {
                        path.pop();
                    }
                    let name = alias
                        .take()
                        .or_else(|| path.last().cloned())
                        .unwrap_or_default();
                    out.push((line, path, name, i));
                };
            while j < toks.len() {
                let (l, t) = &toks[j];
                match t {
                    Tok::Punct(";") => break,
                    Tok::Punct("{") => {
                        prefix.push(std::mem::take(&mut cur));
                    }
                    Tok::Punct("}") => {
                        flush(&mut cur, &mut alias, &prefix, line, &mut out);
                        prefix.pop();
                    }
                    Tok::Punct(",") => flush(&mut cur, &mut alias, &prefix, line, &mut out),
                    Tok::Punct("*") => cur.push("*".into()),
                    Tok::Punct(_) => {}
                    Tok::Ident(s) if s == "as" => {
                        if let Some((_, Tok::Ident(a))) = toks.get(j + 1) {
                            alias = Some(a.clone());
                            j += 1;
                        }
                    }
                    Tok::Ident(s) => {
                        if cur.is_empty() {
                            line = *l;
                        }
                        cur.push(s.clone());
                    }
                }
                j += 1;
            }
            flush(&mut cur, &mut alias, &prefix, line, &mut out);
            i = j;
        }
        i += 1;
    }
    out.retain(|(_, p, _, _)| p.last().is_none_or(|s| s != "*") || p.len() > 1);
    for (_, p, _, _) in &mut out {
        if p.last().is_some_and(|s| s == "*") {
            p.pop();
        }
    }
    out
}

/// Paths outside `use` declarations that start with `crate::` or `super::`,
/// with their line and token index.
fn inline_paths(toks: &[(usize, Tok)]) -> Vec<(usize, Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut in_use = false;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].1 {
            Tok::Ident(s) if s == "use" => in_use = true,
            Tok::Punct(";") => in_use = false,
            Tok::Ident(s)
                if !in_use
                    && (s == "crate" || s == "super")
                    && toks.get(i + 1).map(|t| &t.1) == Some(&Tok::Punct("::"))
                    && !(i > 0 && toks[i - 1].1 == Tok::Punct("::")) =>
            {
                let mut segs = vec![s.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.1) == Some(&Tok::Punct("::")) {
                    match toks.get(j + 1).and_then(|t| ident(&t.1)) {
                        Some(seg) => segs.push(seg.to_owned()),
                        None => break,
                    }
                    j += 2;
                }
                out.push((toks[i].0, segs, i));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module path at token `at`: the file's module, then the inline `mod x { … }`
/// blocks around it.
fn scope_of(toks: &[(usize, Tok)], at: usize, module: &str) -> Vec<String> {
    let mut path: Vec<String> = vec!["crate".into()];
    if module != "crate" {
        path.extend(module.split("::").map(str::to_owned));
    }
    let mut stack: Vec<(usize, bool)> = Vec::new(); // (depth, is an inline module)
    let mut depth = 0;
    for (i, (_, t)) in toks.iter().enumerate().take(at) {
        match t {
            Tok::Punct("{") => {
                depth += 1;
                let is_mod = i >= 2
                    && ident(&toks[i - 2].1) == Some("mod")
                    && ident(&toks[i - 1].1).is_some();
                if is_mod {
                    path.push(ident(&toks[i - 1].1).expect("checked").to_owned());
                }
                stack.push((depth, is_mod));
            }
            Tok::Punct("}") => {
                if let Some((_, true)) = stack.pop() {
                    path.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    path
}
