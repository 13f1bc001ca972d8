//! An exclusive hold on a results folder: a lock file that names the process holding it,
//! released when that process ends, however it ends (an advisory `flock`, not the file's
//! existence: a killed run leaves no stale lock behind).

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Hold `path` for this process: `Ok(Ok(file))` (keep the file to keep the hold), or
/// `Ok(Err(pid))`: another process holds it (its pid as it wrote it).
pub fn hold(path: &Path) -> Result<std::result::Result<File, String>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    if f.try_lock().is_err() {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        return Ok(Err(holder.trim().to_string()));
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(Ok(f))
}
