//! The layer table of `src/lib.rs` holds: every `crate::` path in the gateway's sources (outside
//! unit tests) names a module of a lower row than the module it is written in. A path up the
//! table or sideways within a row fails, with the file and line, so no module cycle can form.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rows of the table in `src/lib.rs`: module name -> row.
fn table(lib: &str) -> BTreeMap<String, u32> {
    let mut rows = BTreeMap::new();
    for line in lib.lines() {
        let Some(cells) = line.strip_prefix("//! |") else {
            continue;
        };
        let mut cells = cells.split('|').map(str::trim);
        let (Some(row), Some(modules)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Ok(row) = row.parse::<u32>() else {
            continue; // the header and its rule
        };
        for module in modules.split(',').map(str::trim) {
            assert!(
                rows.insert(module.to_owned(), row).is_none(),
                "{module} is in the table twice"
            );
        }
    }
    rows
}

/// The top-level modules `src/lib.rs` declares.
fn declared(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit tests (`#[cfg(test)] mod ...` to
/// the end of the file, where this project keeps them). Lines are kept, for messages.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            // `//` inside a string (a URL) is rare in `use` lines; cutting there only loses
            // the rest of that line.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module names each `crate::` path in `code` reaches, with their line numbers:
/// `crate::a::x`, `crate::{a, b::{c, d}}`.
fn paths(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(at) = rest.find("crate::") {
        let start = offset + at;
        let line = code[..start].matches('\n').count() + 1;
        let after = &code[start + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The first name of each item at depth 1.
            let mut depth = 1;
            let mut item_named = false;
            let mut name = String::new();
            for c in group.chars() {
                if depth == 1 && !item_named {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        found.push((std::mem::take(&mut name), line));
                        item_named = true;
                    }
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_named = false,
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.push((name, line));
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((name, line));
        }
        offset = start + "crate::".len();
        rest = &code[offset..];
    }
    found
}

/// The paths of `text` (a file of module `top`, in `row`) to other modules of the table: how
/// many, and those that do not go down, as "line: what".
fn against(rows: &BTreeMap<String, u32>, top: &str, row: u32, text: &str) -> (usize, Vec<String>) {
    let mut edges = 0;
    let mut wrong = Vec::new();
    for (target, line) in paths(&code(text)) {
        if target == top {
            continue;
        }
        let Some(&target_row) = rows.get(&target) else {
            // A crate-level item (`crate::Config`) re-exported by lib.rs.
            continue;
        };
        edges += 1;
        if target_row >= row {
            wrong.push(format!(
                "{line}: {top} (row {row}) uses {target} (row {target_row})"
            ));
        }
    }
    (edges, wrong)
}

#[test]
fn every_import_goes_down_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let rows = table(&lib);
    let modules = declared(&lib);
    let listed: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(
        modules, listed,
        "src/lib.rs: the table and the `pub mod`s differ"
    );

    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut edges = 0;
    for file in &files {
        let relative = file.strip_prefix(root.join("src")).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let Some(&row) = rows.get(&top) else {
            assert!(
                top == "lib" || top == "main",
                "{} is in no module of the table",
                relative.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let (count, bad) = against(&rows, &top, row, &text);
        edges += count;
        wrong.extend(
            bad.into_iter()
                .map(|b| format!("src/{}:{b}", relative.display())),
        );
    }
    assert!(
        edges > 100,
        "only {edges} paths found: is the reader broken?"
    );
    assert!(
        wrong.is_empty(),
        "imports against the table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    let text = "use crate::a::X;\nuse crate::{b, c::{d, e}, f::G};\nlet x = crate::h::y();";
    let found = paths(text);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "f", "h"]);
    let lines: Vec<usize> = found.iter().map(|(_, l)| *l).collect();
    assert_eq!(lines, [1, 2, 2, 2, 3]);
    assert!(paths(&code("// crate::z::Q\nfn f() {}")).is_empty());
    assert!(
        paths(&code(
            "fn f() {}\n#[cfg(test)]\nmod tests {\n use crate::z; }"
        ))
        .is_empty()
    );
}

#[test]
fn upward_and_sideways_imports_are_caught() {
    let lib = "//! | row | modules |\n//! |---|---|\n//! | 2 | top |\n//! | 1 | left, right |\n\
               //! | 0 | bottom |\n";
    let rows = table(lib);
    assert_eq!(rows.len(), 4);
    let text = "use crate::bottom::B;\nuse crate::{right, top::T};\nfn f() { crate::left::g() }";
    let (edges, wrong) = against(&rows, "left", rows["left"], text);
    assert_eq!(edges, 3, "left itself is not counted");
    assert_eq!(
        wrong,
        [
            "2: left (row 1) uses right (row 1)",
            "2: left (row 1) uses top (row 2)"
        ]
    );
    let (_, fine) = against(&rows, "top", rows["top"], text);
    assert!(fine.is_empty(), "{fine:?}");
}
