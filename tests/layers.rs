//! The layer table of `src/lib.rs` holds: every path in the gateway's sources (outside unit
//! tests) that reaches another top-level module (`crate::x`, a `super::` chain that climbs to
//! the crate root, an item lib.rs re-exports) names a module of a lower row than the module it
//! is written in. A path up the table or sideways within a row fails, with the file and line,
//! so no cycle among the top-level modules can form. (Submodules of one module may use one
//! another: that is the module's own business.)

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

/// The code of a file without comments and without its unit tests (each `#[cfg(test)] mod`
/// item, from its line to the `}` that closes it at the start of a line, as rustfmt writes it;
/// code after it is still read). Lines are kept (blanked), for messages.
fn code(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let mut at = 0;
    while at + 1 < lines.len() {
        let item = lines[at + 1].trim_start_matches("pub ");
        if lines[at] != "#[cfg(test)]" || !item.starts_with("mod ") {
            at += 1;
            continue;
        }
        let opened = item.matches('{').count();
        let end = if item.ends_with(';') || (opened > 0 && opened == item.matches('}').count()) {
            at + 1 // `mod tests;` (its own file) or a module on one line
        } else {
            (at + 2..lines.len())
                .find(|&i| lines[i] == "}")
                .unwrap_or_else(|| panic!("`{item}` has no `}}` closing it at a line's start"))
        };
        for line in &mut lines[at..=end] {
            *line = "";
        }
        at = end + 1;
    }
    lines
        .iter()
        .map(|line| match line.find("//") {
            // `//` inside a string (a URL) is rare in `use` lines; cutting there only loses
            // the rest of that line.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a source file under `src/` (`net/session/mod.rs` -> net, session).
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// What lib.rs re-exports at the crate root (`pub use server::{Server, ...};`): item -> module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, tree)) = rest.split_once("::") else {
            continue;
        };
        for item in tree
            .split([',', '{', '}', ';', ' '])
            .filter(|i| !i.is_empty())
        {
            items.insert(item.to_owned(), module.to_owned());
        }
    }
    items
}

/// The top-level module names each `crate::` path in `code` reaches, with their line numbers:
/// `crate::a::x`, `crate::{a, b::{c, d}}`; with `module` (the file's module path) also each
/// chain of `super::` that climbs to the crate root (`super::super::a` two levels down).
fn paths(code: &str) -> Vec<(String, usize)> {
    paths_in(code, &[])
}

fn paths_in(code: &str, module: &[String]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(at) = [rest.find("crate::"), rest.find("super::")]
        .into_iter()
        .flatten()
        .min()
    {
        let start = offset + at;
        let line = code[..start].matches('\n').count() + 1;
        let mut after = &code[start..];
        if after.starts_with("super::") {
            let mut climbs = 0;
            while let Some(next) = after.strip_prefix("super::") {
                climbs += 1;
                after = next;
            }
            offset = code.len() - after.len();
            rest = &code[offset..];
            // Within the file's own top-level module: its business.
            if climbs < module.len() || module.is_empty() {
                continue;
            }
        } else {
            after = &after["crate::".len()..];
        }
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
            // A glob of the crate root hides what it uses: reported as `*`.
            let name = if name.is_empty() && after.starts_with('*') {
                "*".to_owned()
            } else {
                name
            };
            found.push((name, line));
        }
        offset = code.len() - after.len();
        rest = &code[offset..];
    }
    found
}

/// The paths of `text` (a file of `module`, whose top-level module is in `row`) to other
/// modules of the table, items lib.rs re-exports counted as their modules': how many, and
/// those that do not go down, as "line: what".
fn against(
    (rows, reexported): (&BTreeMap<String, u32>, &BTreeMap<String, String>),
    module: &[String],
    row: u32,
    text: &str,
) -> (usize, Vec<String>) {
    let top = module[0].as_str();
    let mut edges = 0;
    let mut wrong = Vec::new();
    for (target, line) in paths_in(&code(text), module) {
        let target = reexported.get(&target).cloned().unwrap_or(target);
        if target == top {
            continue;
        }
        if target == "*" {
            wrong.push(format!("{line}: {top} imports the crate root's glob"));
            continue;
        }
        let Some(&target_row) = rows.get(&target) else {
            // `crate::` items of lib.rs itself (none but the re-exports).
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

    let reexported = reexports(&lib);
    assert!(
        !reexported.is_empty(),
        "lib.rs re-exports Config and Server"
    );
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut edges = 0;
    for file in &files {
        let relative = file.strip_prefix(root.join("src")).unwrap();
        let module = module_path(relative);
        let top = module[0].clone();
        let Some(&row) = rows.get(&top) else {
            assert!(
                top == "lib" || top == "main",
                "{} is in no module of the table",
                relative.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let (count, bad) = against((&rows, &reexported), &module, row, &text);
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
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n#[cfg(test)]\nmod x {}"
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
    let reexported = reexports("pub use top::{Server, Handle};\npub use bottom::Config;\n");
    assert_eq!(reexported["Handle"], "top");
    let left = ["left".to_owned()];
    let (edges, wrong) = against((&rows, &reexported), &left, rows["left"], text);
    assert_eq!(edges, 3, "left itself is not counted");
    assert_eq!(
        wrong,
        [
            "2: left (row 1) uses right (row 1)",
            "2: left (row 1) uses top (row 2)"
        ]
    );
    let top = ["top".to_owned()];
    let (_, fine) = against((&rows, &reexported), &top, rows["top"], text);
    assert!(fine.is_empty(), "{fine:?}");

    // A re-exported item, a `super::` chain that climbs to the root, and code after the tests.
    let deep = ["left".to_owned(), "inner".to_owned(), "leaf".to_owned()];
    let text = "use crate::Server;\nuse super::super::super::right::R;\nuse super::super::x::Y;\nuse super::sibling::S;\n\
                #[cfg(test)]\nmod tests {\n    use crate::top::T;\n}\nuse crate::{Config, top};\n";
    let (edges, wrong) = against((&rows, &reexported), &deep, rows["left"], text);
    assert_eq!(edges, 4, "{wrong:?}");
    assert_eq!(
        wrong,
        [
            "1: left (row 1) uses top (row 2)",
            "2: left (row 1) uses right (row 1)",
            "9: left (row 1) uses top (row 2)"
        ]
    );
    // A glob of the crate root from a top-level module hides what it uses.
    let (_, glob) = against((&rows, &reexported), &left, rows["left"], "use super::*;\n");
    assert_eq!(glob, ["1: left imports the crate root's glob"]);
}
