//! The code stays in pieces the next person can read whole: no production source file (the
//! gateway, its crates, ocpp-bench; unit tests at the end of a file and `tests.rs` files not
//! counted) over 800 lines, no function over 150. A file or function that grows past them fails
//! here with its name, to be split by concern before it lands.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 150;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The lines of a file before its unit tests (`#[cfg(test)]` at the start of a line, where
/// this project puts its test module, at the end of the file).
fn production(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect()
}

/// Whether `line` starts a function item (with a body or not), and its indentation.
fn function_start(line: &str) -> Option<usize> {
    let code = line.trim_start();
    let indent = line.len() - code.len();
    let mut rest = code;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    rest.starts_with("fn ").then_some(indent)
}

/// Every function of `lines` longer than the limit: (name line, length in lines). A function
/// ends at the first `}` at its own indentation (rustfmt's layout); one written on one line, or
/// declared without a body, is short.
fn long_functions(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(indent) = function_start(line) else {
            continue;
        };
        if line.trim_end().ends_with('}') || line.trim_end().ends_with(';') {
            continue;
        }
        let end = lines[start + 1..].iter().position(|l| {
            let code = l.trim_start();
            l.len() - code.len() == indent && code.starts_with('}')
        });
        if let Some(end) = end
            && end + 2 > MAX_FN_LINES
        {
            long.push((start + 1, end + 2));
        }
    }
    long
}

#[test]
fn no_production_file_or_function_is_too_long_to_read_whole() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "crates/ocpp/src",
        "crates/wire/src",
        "crates/transport/src",
        "crates/basics/src",
        "bench/src",
    ] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "the sources were not found");
    let mut faults = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let lines = production(&text);
        let shown = path.strip_prefix(root).unwrap().display();
        if lines.len() > MAX_FILE_LINES {
            faults.push(format!(
                "{shown}: {} lines (at most {MAX_FILE_LINES}): split it by concern",
                lines.len()
            ));
        }
        for (line, length) in long_functions(&lines) {
            faults.push(format!(
                "{shown}:{line}: a function of {length} lines (at most {MAX_FN_LINES})"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_measure_finds_a_long_function_and_its_end() {
    let mut text = String::from("impl A {\n    pub(super) fn long(\n        x: u8,\n    ) {\n");
    for _ in 0..MAX_FN_LINES {
        text.push_str("        let _ = x;\n");
    }
    text.push_str("    }\n\n    fn short() -> u8 { 1 }\n    fn declared(&self);\n}\n");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(long_functions(&lines), vec![(2, MAX_FN_LINES + 4)]);
    let cut = production("fn a() {}\n#[cfg(test)]\nmod tests {\n}\n");
    assert_eq!(cut, vec!["fn a() {}"]);
}
