//! Where media bytes live: a blob store named by content hash. `FileStore` keeps them as
//! files under the data directory; an object store can implement the same trait.

use std::{
    io,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use palisade_core::{Error, ErrorKind, Result};
use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Bytes as they arrive or leave, in chunks.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Content written to a blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the content, lower-case hex: its name in the store.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Content-addressed storage of media bytes.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes a stream, refusing it (`M_TOO_LARGE`) past `limit` bytes. Returns once the
    /// content is durable; identical content is kept once.
    async fn put(&self, body: ByteStream, limit: u64) -> Result<Stored>;
    /// `len` bytes of stored content from offset `start`; `None` if the store lacks it.
    async fn read(&self, sha256: &str, start: u64, len: u64) -> Result<Option<ByteStream>>;
    /// Whether the store holds content of this hash.
    async fn exists(&self, sha256: &str) -> Result<bool>;
    /// Removes stored content (nothing happens if the store lacks it).
    async fn delete(&self, sha256: &str) -> Result<()>;
}

/// A blob store on the local file system: `<root>/ab/cd/abcd…` for content hashed `abcd…`,
/// written to `<root>/tmp` first and renamed into place only once complete and synced.
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store under `root` (created when first written to).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where content of a hash lives; `None` for anything that is not a SHA-256 in hex (so a
    /// stored value can never name a path outside the store).
    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let valid =
            sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.root.join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::internal(format!("media store: {what} {}: {e}", path.display()))
}

/// A temporary file removed unless kept.
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl BlobStore for FileStore {
    async fn put(&self, mut body: ByteStream, limit: u64) -> Result<Stored> {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await.map_err(|e| io_error("creating", &tmp_dir, e))?;
        let name: String =
            rand::thread_rng().sample_iter(Alphanumeric).take(24).map(char::from).collect();
        let tmp = tmp_dir.join(name);
        let mut file =
            tokio::fs::File::create(&tmp).await.map_err(|e| io_error("creating", &tmp, e))?;
        let mut temporary = Temporary(Some(tmp.clone()));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::bad_json(format!("Upload interrupted: {e}")))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("Upload is larger than the limit of {limit} bytes"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| io_error("writing", &tmp, e))?;
        }
        file.sync_all().await.map_err(|e| io_error("syncing", &tmp, e))?;
        drop(file);
        let sha256 = hex(&hasher.finalize());
        let target = self.path_of(&sha256).expect("a SHA-256 in hex names a path");
        let dir = target.parent().expect("content paths have a parent");
        tokio::fs::create_dir_all(dir).await.map_err(|e| io_error("creating", dir, e))?;
        // Identical content is already there (and complete: only whole files are renamed in).
        if !tokio::fs::try_exists(&target).await.map_err(|e| io_error("checking", &target, e))? {
            tokio::fs::rename(&tmp, &target).await.map_err(|e| io_error("renaming", &tmp, e))?;
            temporary.0 = None;
            // The rename itself must survive a crash.
            let directory =
                tokio::fs::File::open(dir).await.map_err(|e| io_error("opening", dir, e))?;
            directory.sync_all().await.map_err(|e| io_error("syncing", dir, e))?;
        }
        Ok(Stored { sha256, size })
    }

    async fn read(&self, sha256: &str, start: u64, len: u64) -> Result<Option<ByteStream>> {
        let Some(path) = self.path_of(sha256) else { return Ok(None) };
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        file.seek(io::SeekFrom::Start(start)).await.map_err(|e| io_error("seeking", &path, e))?;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        Ok(Some(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).boxed()))
    }

    async fn exists(&self, sha256: &str) -> Result<bool> {
        let Some(path) = self.path_of(sha256) else { return Ok(false) };
        tokio::fs::try_exists(&path).await.map_err(|e| io_error("checking", &path, e))
    }

    async fn delete(&self, sha256: &str) -> Result<()> {
        let Some(path) = self.path_of(sha256) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &path, e)),
        }
    }
}
