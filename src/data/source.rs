//! Reads a dataset's files either straight from its `.tar.gz` archive or from a folder the user
//! extracted it to. Paths are returned relative to the archive/folder root with `/` separators.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// All files under `root` whose relative path passes `keep`, with their bytes.
pub fn read_files(
    root: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>, DataError> {
    let io = |e: std::io::Error| DataError::Io {
        path: root.to_path_buf(),
        reason: e.to_string(),
    };
    let mut out = BTreeMap::new();
    if root.is_dir() {
        for entry in walkdir::WalkDir::new(root).follow_links(true) {
            let entry = entry.map_err(|e| DataError::Io {
                path: root.to_path_buf(),
                reason: e.to_string(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = relative(root, entry.path());
            if keep(&rel) {
                out.insert(rel, std::fs::read(entry.path()).map_err(io)?);
            }
        }
    } else if root.is_file() {
        let file = std::fs::File::open(root).map_err(io)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let entries = archive.entries().map_err(|e| DataError::Layout {
            path: root.to_path_buf(),
            expected: format!("a .tar.gz archive or a folder ({e})"),
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| DataError::Layout {
                path: root.to_path_buf(),
                expected: format!("a readable .tar.gz archive ({e})"),
            })?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
                .unwrap_or_default();
            if keep(&rel) {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut buf).map_err(io)?;
                out.insert(rel, buf);
            }
        }
    } else {
        return Err(DataError::Io {
            path: root.to_path_buf(),
            reason: "no such file or folder".into(),
        });
    }
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The last `n` components of a `/`-separated path (fewer if it is shorter).
pub fn tail(path: &str, n: usize) -> Vec<&str> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    parts[parts.len().saturating_sub(n)..].to_vec()
}
