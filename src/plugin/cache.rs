//! Compiled components on disk, so that a restarted controller, a standby taking over, and
//! every `kubetask render` after the first load plugins without compiling them again.
//!
//! An entry is named by the component's sha256 digest and a hash of the wasmtime version and
//! the engine's configuration (`Engine::precompile_compatibility_hash`), so entries of another
//! build or configuration are never picked up; it holds wasmtime's serialized component
//! followed by the sha256 of those bytes, so a truncated or corrupt entry is detected, removed
//! and replaced by a fresh compilation.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// Feeds what `Hash` writes into sha256 (a stable digest of the engine's compatibility hash).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ArtifactCache {
    /// Uses `dir` when this user owns it (made readable only by this user), else a
    /// subdirectory `kubetask-<uid>` of it that this user creates or already owns. What is not
    /// ours is never changed: a Deployment's `emptyDir` belongs to root and is writable by
    /// everyone, so the entries (machine code, run as is) go where no one else may write.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        let dir = private_dir(dir)?;
        Ok(Self { dir })
    }

    /// The user's cache directory for `kubetask render`: `$XDG_CACHE_HOME/kubetask/plugins`,
    /// else `~/.cache/kubetask/plugins`.
    pub fn user_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(base.join("kubetask").join("plugins"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = Sha256Hasher(Sha256::new());
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let build = hex(&hasher.0.finalize()[..8]);
        let component = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{component}-{build}.cwasm"))
    }

    /// The compiled component of `digest`, if a sound entry exists.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(engine, digest);
        let bytes = std::fs::read(&path).ok()?;
        let Some(split) = bytes.len().checked_sub(32) else {
            let _ = std::fs::remove_file(&path);
            return None;
        };
        let (artifact, checksum) = bytes.split_at(split);
        if Sha256::digest(artifact).as_slice() != checksum {
            tracing::warn!(path = %path.display(), "a corrupt compiled plugin in the cache; compiling again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        match deserialize(engine, artifact) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "a compiled plugin in the cache does not fit this build; compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compiled component of `digest` (atomically: a reader never sees half a file).
    pub fn store(&self, engine: &Engine, digest: &str, component: &Component) {
        let path = self.path(engine, digest);
        let written = component
            .serialize()
            .map_err(|error| std::io::Error::other(error.to_string()))
            .and_then(|artifact| {
                let partial = path.with_extension(format!("partial-{}", std::process::id()));
                let mut file = std::fs::File::create(&partial)?;
                file.write_all(&artifact)?;
                file.write_all(&Sha256::digest(&artifact))?;
                file.sync_all()?;
                std::fs::rename(&partial, &path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&partial);
                })
            });
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "cannot cache a compiled plugin");
        }
    }
}

/// `dir` if this user owns it, else its subdirectory `kubetask-<uid>`, created or checked to be
/// this user's; either one readable and writable by this user alone.
#[cfg(unix)]
fn private_dir(dir: PathBuf) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let uid = effective_uid();
    let private = if std::fs::metadata(&dir)?.uid() == uid {
        dir
    } else {
        let sub = dir.join(format!("kubetask-{uid}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&sub) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        let metadata = std::fs::symlink_metadata(&sub)?;
        if !metadata.is_dir() || metadata.uid() != uid {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a directory of user {uid}: not using it for compiled plugins",
                    sub.display()
                ),
            ));
        }
        sub
    };
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
    Ok(private)
}

/// The user this process runs as.
#[cfg(unix)]
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Turns bytes of [`Component::serialize`] back into a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` requires bytes that `serialize` produced with a
    // compatible engine, because they are machine code run as is. These bytes are: only
    // `ArtifactCache::store` writes this directory's files (created readable and writable by
    // this user only, so no one but this user, who can as well replace the binary, can put
    // anything there); the file name carries this build's version and engine configuration;
    // the trailing sha256 proves the file is whole as written; and wasmtime itself checks the
    // header's version and configuration, refusing (not running) a mismatch.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_replaces_corrupt_or_foreign_entries() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = ArtifactCache::new(dir.path().join("plugins")).expect("a cache");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).expect("an engine");
        let bytes = wat::parse_str("(component)").expect("a component");
        let digest = "sha256:00ff";
        assert!(cache.load(&engine, digest).is_none(), "empty at first");
        let component = Component::from_binary(&engine, &bytes).expect("compiles");
        cache.store(&engine, digest, &component);
        assert!(
            cache.load(&engine, digest).is_some(),
            "a stored entry loads"
        );

        let path = cache.path(&engine, digest);
        let mut corrupt = std::fs::read(&path).expect("the entry");
        corrupt[10] ^= 0xff;
        std::fs::write(&path, &corrupt).expect("written");
        assert!(
            cache.load(&engine, digest).is_none(),
            "a corrupt entry is refused"
        );
        assert!(!path.exists(), "and removed");

        // Bytes with a valid checksum that are not a serialized component.
        let mut foreign = b"not a compiled component".to_vec();
        let checksum = Sha256::digest(&foreign);
        foreign.extend_from_slice(&checksum);
        std::fs::write(&path, &foreign).expect("written");
        assert!(
            cache.load(&engine, digest).is_none(),
            "a foreign entry is refused"
        );
        assert!(!path.exists());

        // Another engine configuration uses another name.
        let mut other = wasmtime::Config::new();
        other.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&other).expect("an engine");
        cache.store(&engine, digest, &component);
        assert_ne!(cache.path(&other, digest), path);
        assert!(cache.load(&other, digest).is_none());
    }
}
