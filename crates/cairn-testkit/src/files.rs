//! Finding files in a node's data directory (or any test directory), whatever layout the
//! server uses today.

use std::path::{Path, PathBuf};

/// At most this many directory entries are visited by one [`find_files`] walk, so that a
/// walk of a runaway directory stays bounded.
const MAX_ENTRIES: usize = 100_000;

/// Every file named `file_name` under `root` (recursively, symlinks not followed), sorted.
/// Unreadable directories are skipped; the walk visits at most 100,000 entries.
pub fn find_files(root: &Path, file_name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_ENTRIES {
                found.sort();
                return found;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if entry.file_name() == file_name {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
