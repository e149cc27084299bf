//! The crate's shape: its top-level modules import each other without a cycle, so each can be
//! read, tested and changed with only what is below it in mind (`config` at the bottom, the
//! shared `types` below signalling and media, the router at the top). Test code is left out:
//! a test may use whatever helps it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> (module it imports -> the files that import it).
type Imports = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let imports = imports(&source);
    assert!(
        imports.len() > 10,
        "expected the crate's modules: {:?}",
        imports.keys()
    );
    if let Some(cycle) = find_cycle(&imports) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let files = &imports[&pair[0]][&pair[1]];
                format!("{} -> {} (in {:?})", pair[0], pair[1], files)
            })
            .collect();
        panic!(
            "import cycle between top-level modules:\n{}",
            steps.join("\n")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut imports = Imports::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        imports
            .entry(from.into())
            .or_default()
            .insert(to.into(), BTreeSet::new());
    }
    assert_eq!(
        find_cycle(&imports),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    imports.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&imports), None);
}

/// Which top-level modules each top-level module's non-test code names as `crate::<module>`.
fn imports(source: &Path) -> Imports {
    let lib = std::fs::read_to_string(source.join("lib.rs")).unwrap();
    let modules = top_level_modules(&lib);
    let mut imports = Imports::new();
    for module in &modules {
        let mut files = Vec::new();
        rust_files(&source.join(module), &mut files);
        files.push(source.join(format!("{module}.rs")));
        let entry = imports.entry(module.clone()).or_default();
        for file in files.iter().filter(|f| f.exists() && !is_test_file(f)) {
            let text = std::fs::read_to_string(file).unwrap();
            let relative = file.strip_prefix(source).unwrap().display().to_string();
            for used in named_modules(&without_comments(without_tests(&text))) {
                if used != *module && modules.contains(&used) {
                    entry.entry(used).or_default().insert(relative.clone());
                }
            }
        }
    }
    imports
}

/// The modules `lib.rs` declares, except those that exist only in tests.
fn top_level_modules(lib: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let mut test_only = false;
    for line in lib.lines().map(str::trim) {
        let declared = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = declared {
            if !test_only {
                modules.insert(name.to_string());
            }
        }
        test_only = line == "#[cfg(test)]";
    }
    modules
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// A file of tests (`tests.rs`, or anything in a `tests/` folder).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// The text before the file's first inline test module (they come last, by convention).
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let next_is_module = lines
            .peek()
            .is_some_and(|next| next.trim_start().starts_with("mod ") && next.contains('{'));
        if line.trim() == "#[cfg(test)]" && next_is_module {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// The text without its comment lines (a doc comment may name a module it does not use).
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `x` in `crate::x` and in `crate::{x, y::z}`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            // Nested groups name further paths; the first segment of each item is enough.
            for item in group.split(',') {
                names.insert(first_segment(item.trim()));
            }
        } else {
            names.insert(first_segment(rest));
        }
    }
    names
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle as the modules along it, its first module repeated at the end.
fn find_cycle(imports: &Imports) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        imports: &Imports,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in imports.get(module).into_iter().flat_map(|m| m.keys()) {
            if let Some(cycle) = visit(next, imports, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    imports
        .keys()
        .find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
}
