//! Where finished files live: an `object_store` (a local directory by default, S3, GCS
//! or Azure by URL). Originals are content-addressed by sha256, so the same bytes
//! uploaded twice are stored once; previews live under the version that made them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SLATE_STORAGE is not a storage URL Slate understands: {0}")]
    BadUrl(String),
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// Set for the local store: the directory objects are files in.
    local_root: Option<PathBuf>,
    described: String,
}

const CHUNK: usize = 8 * 1024 * 1024;

impl Storage {
    /// `SLATE_STORAGE`: unset means `<data dir>/storage`; a URL (`s3://bucket/prefix`,
    /// `gs://…`, `az://…`, `file:///…`) picks that store, configured by `provider`: the
    /// provider's own settings (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which the binary takes
    /// from its environment (`provider_environment`).
    pub fn open(
        setting: Option<&str>,
        data_dir: &Path,
        provider: Vec<(String, String)>,
    ) -> Result<Self, StorageError> {
        match setting.filter(|s| !s.is_empty()) {
            None => {
                let root = data_dir.join("storage");
                std::fs::create_dir_all(&root)?;
                Self::local(&std::fs::canonicalize(&root)?)
            }
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| StorageError::BadUrl(format!("{url}: {e}")))?;
                if parsed.scheme() == "file" {
                    let root = PathBuf::from(parsed.path());
                    std::fs::create_dir_all(&root)?;
                    return Self::local(&root);
                }
                let options = provider
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v));
                let (store, prefix) = object_store::parse_url_opts(&parsed, options)
                    .map_err(|e| StorageError::BadUrl(format!("{url}: {e}")))?;
                let described = format!(
                    "{}://{}{}",
                    parsed.scheme(),
                    parsed.host_str().unwrap_or(""),
                    parsed.path()
                );
                Ok(Self {
                    store: Arc::from(store),
                    prefix,
                    local_root: None,
                    described,
                })
            }
        }
    }

    /// The object stores' own variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) from this
    /// process's environment, where their SDKs and tools read them too; nothing else.
    pub fn provider_environment() -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .collect()
    }

    fn local(root: &Path) -> Result<Self, StorageError> {
        Ok(Self {
            store: Arc::new(LocalFileSystem::new_with_prefix(root)?),
            prefix: StorePath::default(),
            local_root: Some(root.to_owned()),
            described: root.display().to_string(),
        })
    }

    pub fn describe(&self) -> &str {
        &self.described
    }

    fn key(&self, relative: &str) -> StorePath {
        let relative = StorePath::from(relative);
        self.prefix.parts().chain(relative.parts()).collect()
    }

    pub fn blob_key(sha256: &str) -> String {
        format!("blobs/{}/{sha256}", &sha256[..2])
    }

    pub fn derived_key(version: Uuid, name: &str) -> String {
        format!("derived/{version}/{name}")
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&self.key(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Copies a local file into the store in bounded chunks (memory does not grow with
    /// the file).
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            // Same machine: a hard link costs no copy and no memory; copy across devices.
            let target = root.join(key);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let scratch = target.with_extension("incoming");
            let _ = tokio::fs::remove_file(&scratch).await;
            if tokio::fs::hard_link(file, &scratch).await.is_err() {
                tokio::fs::copy(file, &scratch).await?;
            }
            tokio::fs::rename(&scratch, &target).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&self.key(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut input = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = input.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// A local path for the object: the file itself for the local store, else a copy
    /// downloaded to `scratch` (which the caller removes).
    pub async fn local_copy(&self, key: &str, scratch: &Path) -> Result<PathBuf, StorageError> {
        if let Some(root) = &self.local_root {
            return Ok(root.join(key));
        }
        let result = self.store.get(&self.key(key)).await?;
        let mut stream = result.into_stream();
        let mut out = tokio::fs::File::create(scratch).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(scratch.to_owned())
    }

    pub async fn get_range(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<object_store::GetResult, StorageError> {
        let options = object_store::GetOptions {
            range: range.map(Into::into),
            ..Default::default()
        };
        Ok(self.store.get_opts(&self.key(key), options).await?)
    }

    pub async fn size(&self, key: &str) -> Result<u64, StorageError> {
        Ok(self.store.head(&self.key(key)).await?.size)
    }
}
