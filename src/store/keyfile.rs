//! The key ring of the embedded default, kept in a file of the data directory so a restart
//! keeps the same `kid` and tokens issued before it stay valid.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{KeyRingRecord, KeyStore, StoreError, StoreResult};

pub struct FileKeyStore {
    path: PathBuf,
}

impl FileKeyStore {
    pub fn new(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        Ok(Self { path: data_dir.join("signing-keys.json") })
    }

    fn read(&self) -> StoreResult<Option<KeyRingRecord>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Write to a private temporary file, then rename over the ring: a crash leaves the old
    /// ring or the new one, never half of one.
    fn write(&self, ring: &KeyRingRecord) -> StoreResult<()> {
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(ring).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let io = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", tmp.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[async_trait]
impl KeyStore for FileKeyStore {
    async fn load(&self) -> StoreResult<Option<KeyRingRecord>> {
        self.read()
    }
    async fn create_if_absent(&self, ring: &KeyRingRecord) -> StoreResult<KeyRingRecord> {
        if let Some(existing) = self.read()? {
            return Ok(existing);
        }
        self.write(ring)?;
        Ok(ring.clone())
    }
    async fn save(&self, ring: &KeyRingRecord) -> StoreResult<()> {
        self.write(ring)
    }
}
