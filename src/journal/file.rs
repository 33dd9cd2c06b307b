//! The journal file: appending, syncing, and rotation by size (`path` -> `path.1` -> ...,
//! `events.max_files` files in all). A failure may tear the last line; a reopened file starts
//! on a fresh line.
//!
//! Retention no one outside can drive: rotation never deletes a file written to within
//! `events.min_retention` (its modification time is its newest line's). A flood that rotates
//! fast then keeps more files than `max_files` instead of deleting recent billing lines (and,
//! if the disk fills, the journal fails and billing answers are refused: nothing acknowledged
//! is lost). What one charge point can write is bounded by its allowance (`journal_budget`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How many journal files are kept, and for how long at least.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Files in all, the current one included, once their lines are old enough.
    pub max_files: usize,
    /// A file written to within this long is never deleted.
    pub min_age: Duration,
}

/// The open journal file and its size.
pub struct JournalFile {
    path: PathBuf,
    out: BufWriter<File>,
    pub size: u64,
    retention: Retention,
}

impl JournalFile {
    pub fn open(path: PathBuf, retention: Retention) -> io::Result<JournalFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut size = file.metadata().map_or(0, |m| m.len());
        if size > 0 && file.metadata().is_ok_and(|m| m.is_file()) {
            // A failure (or a crash) may have torn the last line: start on a fresh one.
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        Ok(JournalFile {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            retention,
        })
    }

    pub fn write(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Closes the file without writing what is still buffered (those lines are counted lost
    /// and their answers refused: they must not appear later).
    pub fn discard(self) {
        let (file, _unwritten) = self.out.into_parts();
        drop(file);
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.out.get_ref().sync_data()
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest files beyond
    /// `max_files` in all are deleted unless written to within `min_age` (then more are kept);
    /// a new, empty `path` is opened.
    pub fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| rotated_name(&self.path, n);
        let mut highest = 0;
        while numbered(highest + 1).exists() {
            highest += 1;
        }
        // After the shift the chain is 1..=highest+1, plus the new current file.
        let keep = self.retention.max_files.saturating_sub(1);
        let mut protected = 0;
        while highest + 1 > keep && highest >= 1 {
            if self.young(&numbered(highest)) {
                protected = highest + 1 - keep;
                break;
            }
            match std::fs::remove_file(numbered(highest)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            highest -= 1;
        }
        if protected > 0 {
            log::warn!(
                "journal: keeping {protected} file(s) beyond events.max_files: written to within \
                 events.min_retention ({:?})",
                self.retention.min_age
            );
        }
        if keep == 0 && !self.young(&self.path) {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..=highest).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The renames must survive a crash as well as the lines.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

impl JournalFile {
    /// Whether `path` was modified within the minimum retention.
    fn young(&self, path: &Path) -> bool {
        if self.retention.min_age.is_zero() {
            return false;
        }
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                SystemTime::now()
                    .duration_since(modified)
                    .map_or(true, |age| age < self.retention.min_age)
            })
    }
}

/// `events.jsonl` -> `events.jsonl.3`.
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_files_in_all() {
        let dir = std::env::temp_dir().join(format!("journal-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let retention = Retention {
            max_files: 3,
            min_age: Duration::ZERO,
        };
        let mut file = JournalFile::open(path.clone(), retention).unwrap();
        for round in 0..5 {
            file.write(format!("line {round}\n").as_bytes()).unwrap();
            file.flush().unwrap();
            file.rotate().unwrap();
        }
        file.write(b"current\n").unwrap();
        file.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "current\n");
        assert_eq!(
            std::fs::read_to_string(rotated_name(&path, 1)).unwrap(),
            "line 4\n"
        );
        assert_eq!(
            std::fs::read_to_string(rotated_name(&path, 2)).unwrap(),
            "line 3\n"
        );
        assert!(!rotated_name(&path, 3).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_never_deletes_a_file_younger_than_the_retention() {
        let dir = std::env::temp_dir().join(format!("journal-retain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let retention = Retention {
            max_files: 3,
            min_age: Duration::from_secs(3600),
        };
        let mut file = JournalFile::open(path.clone(), retention).unwrap();
        file.write(b"billing line\n").unwrap();
        file.flush().unwrap();
        for round in 0..5 {
            file.rotate().unwrap();
            file.write(format!("flood {round}\n").as_bytes()).unwrap();
            file.flush().unwrap();
        }
        // Everything is younger than an hour: nothing was deleted, the chain grew.
        assert_eq!(
            std::fs::read_to_string(rotated_name(&path, 5)).unwrap(),
            "billing line\n"
        );
        // Once old enough, the files beyond max_files go at the next rotation.
        let old = SystemTime::now() - Duration::from_secs(7200);
        for n in 3..=5 {
            File::options()
                .write(true)
                .open(rotated_name(&path, n))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        file.rotate().unwrap();
        assert!(rotated_name(&path, 2).exists());
        assert!(
            rotated_name(&path, 3).exists(),
            "a young file shifted into .3 stays"
        );
        assert!(!rotated_name(&path, 4).exists());
        assert!(!rotated_name(&path, 5).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
