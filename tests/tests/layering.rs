//! The shared crate is layered: no file under `shared/src` imports from a file that imports it back,
//! directly or around a longer circle. An import is a `use` or a path (`crate::…`, `super::…`,
//! `self::…`, or a child module's name) outside `#[cfg(test)]` modules, and it points at the file that
//! defines the longest module prefix of the path. A `mod` declaration is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["access", "model"]`; the root is `[]`.
type Module = Vec<String>;

#[test]
fn no_import_circles_between_files_of_the_shared_crate() {
    let root = credvault_tests::workspace_root().join("shared/src");
    let files = module_files(&root);
    assert!(files.len() > 20, "found the crate's files under {}", root.display());
    let graph = import_graph(&files);
    let circles: Vec<Vec<&Module>> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    let mut report = String::new();
    for component in &circles {
        let members: BTreeSet<&Module> = component.iter().copied().collect();
        report.push_str(&format!(
            "\nfiles importing each other around a circle ({}):\n",
            component.len()
        ));
        for &from in &members {
            for to in graph[from].iter().filter(|to| members.contains(to)) {
                report.push_str(&format!("  {} -> {}\n", file_name(&files, from), file_name(&files, to)));
            }
        }
    }
    assert!(circles.is_empty(), "{report}");
}

/// Capabilities, not one object of everything: the shared crate's code takes what it uses (a
/// `PolicyEngine`, a `LoginFlow`, a table ...), and only `instance.rs`, which builds them once per
/// instance, names `Instance`. A function's handlers take their own state; its `new` is the one place
/// it meets the instance.
#[test]
fn only_composition_names_the_instance() {
    let root = credvault_tests::workspace_root();
    let files = module_files(&root.join("shared/src"));
    let mut naming = Vec::new();
    for (module, path) in &files {
        let code = without_test_modules(&strip_comments_and_literals(&std::fs::read_to_string(path).unwrap()));
        if tokenize(&code).iter().any(|t| t == "Instance") {
            naming.push(module.join("::"));
        }
    }
    assert_eq!(
        naming,
        ["", "instance"],
        "files of shared/src naming Instance (\"\" is lib.rs)"
    );
    for function in ["credential-fetch", "grant-management", "login-callback"] {
        let lib = std::fs::read_to_string(root.join(format!("functions/{function}/src/lib.rs"))).unwrap();
        let code = strip_comments_and_literals(&lib);
        let uses = code.matches("Instance").count();
        assert!(
            uses <= 2,
            "{function}'s handlers take their own state, not the instance ({uses} mentions)"
        );
        assert!(
            !code.contains("State<Arc<Instance>>") && !code.contains("State<Instance>"),
            "{function}"
        );
    }
}

#[test]
fn the_finder_sees_a_circle_through_use_trees_super_and_inline_paths() {
    let files: BTreeMap<Module, String> = [
        (vec![], "pub mod a;\npub mod b;\n".to_string()),
        (
            vec!["a".to_string()],
            "pub mod inner;\nuse crate::{b::{self, Thing}};\n// crate::c::ignored\n".to_string(),
        ),
        (vec!["a".to_string(), "inner".to_string()], "fn f() { super::super::b::go(); }".to_string()),
        (
            vec!["b".to_string()],
            "fn g() { let s = \"crate::a::not_code\"; crate::a::inner::h(); }\n#[cfg(test)]\nmod tests { use crate::a::*; }"
                .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let graph = import_graph_of_sources(&files);
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let inner = vec!["a".to_string(), "inner".to_string()];
    assert_eq!(
        graph[&a],
        BTreeSet::from([b.clone()]),
        "a use tree; a comment is no import"
    );
    assert_eq!(graph[&inner], BTreeSet::from([b.clone()]), "super::super");
    assert_eq!(
        graph[&b],
        BTreeSet::from([inner.clone()]),
        "inline path; strings and tests are not imports"
    );
    let circles: Vec<_> = strongly_connected(&graph).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(circles.len(), 1, "b -> a/inner -> b");
}

/// Every `.rs` file under `root` by the module it defines.
fn module_files(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read shared/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("under root").with_extension("");
                let mut module: Module = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if module.last().is_some_and(|last| last == "mod" || last == "lib") {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    out
}

fn file_name(files: &BTreeMap<Module, PathBuf>, module: &Module) -> String {
    let root = credvault_tests::workspace_root().join("shared/src");
    files[module]
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn import_graph(files: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let sources = files
        .iter()
        .map(|(module, path)| {
            (
                module.clone(),
                std::fs::read_to_string(path).expect("read a source file"),
            )
        })
        .collect();
    import_graph_of_sources(&sources)
}

fn import_graph_of_sources(sources: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (module, source) in sources {
        let code = without_test_modules(&strip_comments_and_literals(source));
        let tokens = tokenize(&code);
        let children: BTreeSet<&str> = tokens
            .windows(3)
            .filter(|w| w[0] == "mod" && w[2] == ";")
            .map(|w| w[1].as_str())
            .collect();
        let mut targets = BTreeSet::new();
        for path in paths(&tokens) {
            if let Some(target) = resolve(module, &path, &children, sources)
                && &target != module
            {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The file a path reads from: the longest prefix of it that is a module with a file.
fn resolve(
    module: &Module,
    path: &[String],
    children: &BTreeSet<&str>,
    files: &BTreeMap<Module, String>,
) -> Option<Module> {
    let (mut base, mut rest): (Module, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "super" => (module[..module.len().saturating_sub(1)].to_vec(), &path[1..]),
        "self" => (module.clone(), &path[1..]),
        first if children.contains(first) => (module.clone(), path),
        _ => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = base.clone();
    for segment in rest {
        base.push(segment.clone());
        if !files.contains_key(&base) {
            break;
        }
        best = base.clone();
    }
    files.contains_key(&best).then_some(best)
}

/// Source text with comments gone and string and char literals emptied: neither holds imports.
fn strip_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    while i < chars.len() {
        let c = chars[i];
        let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_is_ident && matches!(chars.get(i + 1), Some('"' | '#')) {
            // A raw string r"…" or r#"…"#; anything else starting `r#` is a raw identifier.
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            i += 2 + hashes;
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.chars().count();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime.
            let close = if chars.get(i + 1) == Some(&'\\') {
                chars[i + 2..].iter().position(|&c| c == '\'').map(|p| i + 2 + p)
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match close {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Drops every `#[cfg(test)] mod name { … }`: test code may import what it tests from anywhere.
fn without_test_modules(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(start) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "#[cfg(test)]".len()..];
        let head: String = after.chars().take_while(|&c| c != '{' && c != ';').collect();
        let words: Vec<&str> = head.split_whitespace().collect();
        let is_module = after[head.len()..].starts_with('{')
            && words.len() >= 2
            && words[words.len() - 2] == "mod"
            && words[..words.len() - 2].iter().all(|w| w.starts_with("pub"));
        if !is_module {
            rest = after;
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (k, c) in after.char_indices().skip(head.len()) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// Every path the tokens name: the expanded trees of `use` items and the paths written in code.
fn paths(tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |p| i + p);
            let mut pos = i + 1;
            use_tree(&tokens[..end], &mut pos, Vec::new(), &mut out);
            i = end + 1;
        } else if is_ident(&tokens[i])
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::")
        {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::") && tokens.get(j + 1).is_some_and(|t| is_ident(t)) {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            out.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn use_tree(tokens: &[String], pos: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match tokens.get(*pos).map(String::as_str) {
            None | Some(",") | Some("}") => {
                out.push(prefix);
                return;
            }
            Some("{") => {
                *pos += 1;
                while tokens.get(*pos).is_some_and(|t| t != "}") {
                    use_tree(tokens, pos, prefix.clone(), out);
                    if tokens.get(*pos).is_some_and(|t| t == ",") {
                        *pos += 1;
                    }
                }
                *pos += 1;
                return;
            }
            Some("*") => {
                *pos += 1;
                out.push(prefix);
                return;
            }
            Some("as") => *pos += 2,
            Some(token) if is_ident(token) => {
                prefix.push(token.to_string());
                *pos += 1;
            }
            Some(_) => *pos += 1,
        }
    }
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<&Module>> {
    struct State<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        components: Vec<Vec<&'g Module>>,
    }
    fn visit<'g>(state: &mut State<'g>, v: &'g Module) {
        let n = state.index.len();
        state.index.insert(v, n);
        state.low.insert(v, n);
        state.stack.push(v);
        state.on_stack.insert(v);
        for w in state.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = state.graph.get_key_value(w) else {
                continue;
            };
            if !state.index.contains_key(w) {
                visit(state, w);
                let low = state.low[v].min(state.low[w]);
                state.low.insert(v, low);
            } else if state.on_stack.contains(w) {
                let low = state.low[v].min(state.index[w]);
                state.low.insert(v, low);
            }
        }
        if state.low[v] == state.index[v] {
            let mut component = Vec::new();
            while let Some(w) = state.stack.pop() {
                state.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.components
}
