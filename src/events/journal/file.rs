//! The journal file: appending, syncing, and rotation by size (`path` -> `path.1` -> ...,
//! `events.max_files` files in all). A failure may tear the last line; a reopened file starts
//! on a fresh line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The open journal file and its size.
pub struct JournalFile {
    path: PathBuf,
    out: BufWriter<File>,
    pub size: u64,
    max_files: usize,
}

impl JournalFile {
    pub fn open(path: PathBuf, max_files: usize) -> io::Result<JournalFile> {
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
            max_files,
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

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `max_files`
    /// files in all is deleted; a new, empty `path` is opened.
    pub fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| rotated_name(&self.path, n);
        if self.max_files <= 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            match std::fs::remove_file(numbered(self.max_files - 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            for n in (1..self.max_files - 1).rev() {
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
        let mut file = JournalFile::open(path.clone(), 3).unwrap();
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
}
