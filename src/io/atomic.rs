//! Atomic file and directory writes.
//!
//! A file is written to a hidden temporary file in the same directory
//! (`.NAME.tmp-XXXXXXXX`), flushed, `fsync`ed, and renamed over the target,
//! then the directory is `fsync`ed. Readers therefore see either the old file
//! or the complete new one, never a half-written file. On any error (or a
//! panic inside the writer closure) the temporary file is removed.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{ErrorKind, IoError, Result};

/// A unique-enough suffix: pid, a process-wide counter and random bits.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    format!("{:x}-{n:x}-{r:08x}", std::process::id())
}

/// Splits `path` into (parent directory, final component), rejecting paths
/// that have no file name (`/`, `..`, empty).
fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let name = path.file_name().ok_or_else(|| {
        IoError::new(
            path,
            ErrorKind::Format("path has no file name to write to".into()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_os_string()))
}

/// Removes a path on drop unless disarmed.
struct Cleanup {
    path: Option<PathBuf>,
    is_dir: bool,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = if self.is_dir {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

/// `fsync` a directory so that a rename inside it is durable. Best effort:
/// some platforms/filesystems do not support opening or syncing directories.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Atomic write where the closure reports errors as [`IoError`] itself.
pub(crate) fn atomic_write_with<F>(path: &Path, f: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let (dir, name) = split(path)?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(format!(".tmp-{}", unique_suffix()));
    let tmp = dir.join(tmp_name);

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| IoError::io(path, "create temporary file", e))?;
    let mut guard = Cleanup {
        path: Some(tmp.clone()),
        is_dir: false,
    };
    let mut w = BufWriter::with_capacity(1 << 16, file);
    f(&mut w)?;
    w.flush().map_err(|e| IoError::io(path, "write", e))?;
    let file = w
        .into_inner()
        .map_err(|e| IoError::io(path, "write", e.into_error()))?;
    file.sync_all().map_err(|e| IoError::io(path, "fsync", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| IoError::io(path, "rename temporary file into place", e))?;
    guard.disarm();
    sync_dir(&dir);
    Ok(())
}

/// Atomically creates or replaces the file at `path` with whatever `f`
/// writes. The writer is buffered and seekable. If `f` fails, the target is
/// left untouched and the temporary file removed.
///
/// ```no_run
/// use std::io::Write;
/// gkl_gpu::io::atomic_write("out.txt", |w| writeln!(w, "hello")).unwrap();
/// ```
pub fn atomic_write<F>(path: impl AsRef<Path>, f: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let path = path.as_ref();
    atomic_write_with(path, |w| f(w).map_err(|e| IoError::io(path, "write", e)))
}

/// Atomically creates or replaces the file at `path` with `bytes`.
pub fn atomic_write_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| w.write_all(bytes))
}

/// `fsync` every regular file directly inside `dir` and the directory itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_file() {
            File::open(entry.path())?.sync_all()?;
        } else if ft.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Atomically creates or replaces the directory `path` (e.g. a model
/// directory) with what `f` puts into the fresh directory it is given.
///
/// `f` fills `PATH.tmp-XXXX` (a sibling of `path`); every file in it is then
/// `fsync`ed and the directory is renamed to `path`. If `path` already
/// exists it is first renamed aside to `PATH.old-XXXX` and removed afterwards,
/// so at no moment does a *partial* directory exist at `path` (there is a
/// short window in which `path` does not exist at all). If `f` fails, the
/// temporary directory is removed and `path` is untouched.
///
/// Inside `f`, plain writes are fine (the final sync covers them), but the
/// file writers of this module work too.
pub fn atomic_write_dir<F>(path: impl AsRef<Path>, f: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let path = path.as_ref();
    let (parent, name) = split(path)?;
    let suffix = unique_suffix();
    let sibling = |tag: &str| {
        let mut n = name.clone();
        n.push(format!(".{tag}-{suffix}"));
        parent.join(n)
    };
    let tmp = sibling("tmp");
    fs::create_dir(&tmp).map_err(|e| IoError::io(path, "create temporary directory", e))?;
    let mut guard = Cleanup {
        path: Some(tmp.clone()),
        is_dir: true,
    };
    f(&tmp)?;
    sync_tree(&tmp).map_err(|e| IoError::io(path, "fsync", e))?;

    let old = sibling("old");
    let moved_old = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::rename(path, &old).map_err(|e| IoError::io(path, "move old directory aside", e))?;
            true
        }
        Ok(_) => {
            return Err(IoError::new(
                path,
                ErrorKind::Format("exists and is not a directory; refusing to replace it".into()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(IoError::io(path, "inspect", e)),
    };
    if let Err(e) = fs::rename(&tmp, path) {
        if moved_old {
            // Put the old directory back.
            let _ = fs::rename(&old, path);
        }
        return Err(IoError::io(
            path,
            "rename temporary directory into place",
            e,
        ));
    }
    guard.disarm();
    sync_dir(&parent);
    if moved_old {
        fs::remove_dir_all(&old).map_err(|e| IoError::io(&old, "remove old directory", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gkl-io-atomic-{tag}-{}", unique_suffix()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn failed_write_keeps_old_content_and_leaves_no_temp() {
        let d = scratch("fail");
        let p = d.join("out.bin");
        atomic_write_bytes(&p, b"old").unwrap();
        let r = atomic_write(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("out.bin: cannot write: boom"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(&d), vec!["out.bin".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn panic_in_writer_leaves_no_temp() {
        let d = scratch("panic");
        let p = d.join("x");
        let r = std::panic::catch_unwind(|| {
            let _ = atomic_write(&p, |_w| panic!("writer panicked"));
        });
        assert!(r.is_err());
        assert!(entries(&d).is_empty(), "{:?}", entries(&d));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_parent_is_named() {
        let d = scratch("noparent");
        let p = d.join("no/such/dir/f.npy");
        let e = atomic_write_bytes(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("f.npy: cannot create temporary file"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dir_replace_and_failure() {
        let d = scratch("dir");
        let m = d.join("model");
        atomic_write_dir(&m, |t| atomic_write_bytes(t.join("a"), b"1")).unwrap();
        assert_eq!(fs::read(m.join("a")).unwrap(), b"1");
        atomic_write_dir(&m, |t| atomic_write_bytes(t.join("b"), b"2")).unwrap();
        assert!(!m.join("a").exists());
        assert_eq!(fs::read(m.join("b")).unwrap(), b"2");
        let e = atomic_write_dir(&m, |t| {
            atomic_write_bytes(t.join("c"), b"3")?;
            Err(IoError::new(t, ErrorKind::Format("nope".into())))
        })
        .unwrap_err();
        assert!(e.to_string().contains("nope"));
        assert_eq!(entries(&m), vec!["b".to_string()]);
        assert_eq!(entries(&d), vec!["model".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }
}
