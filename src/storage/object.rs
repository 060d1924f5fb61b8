//! [`ObjectRoot`]: a prefix of an object store bucket as a [`Storage`] root, through the
//! `object_store` crate. Each call runs to completion on a small tokio runtime owned by the root,
//! so callers stay synchronous.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use super::{Listed, Storage, StorageError, MULTIPART_BYTES};
use crate::fsutil::{self, FsError};

/// `url`'s bucket under `prefix`.
pub struct ObjectRoot {
    url: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

impl ObjectRoot {
    /// `s3://bucket/prefix`, configured from the `AWS_*` environment (endpoint, region,
    /// credentials, `AWS_ALLOW_HTTP`), never from arguments.
    /// `settings` (environment-style names) apply on top of the environment.
    pub fn s3(url: &str, settings: &[(String, String)]) -> Result<ObjectRoot, StorageError> {
        let mut builder = AmazonS3Builder::from_env();
        let has = |k: &str| std::env::var_os(k).is_some() || settings.iter().any(|(n, _)| n == k);
        if !has("AWS_REGION") && !has("AWS_DEFAULT_REGION") {
            builder = builder.with_region("us-east-1");
        }
        for (name, value) in settings {
            let key = name
                .to_ascii_lowercase()
                .parse()
                .map_err(|e: object_store::Error| StorageError::Backend {
                    url: url.into(),
                    message: format!("setting {name}: {e}"),
                })?;
            builder = builder.with_config(key, value);
        }
        let builder = builder.with_url(url);
        let store = builder.build().map_err(|e| StorageError::Backend {
            url: url.into(),
            message: e.to_string(),
        })?;
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let prefix = rest
            .split_once('/')
            .map_or("", |(_, p)| p)
            .trim_matches('/');
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vggcache-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Backend {
                url: url.into(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(ObjectRoot {
            url: url.trim_end_matches('/').into(),
            prefix: prefix.into(),
            store: Arc::new(store),
            rt,
        })
    }

    fn key(&self, key: &str) -> Key {
        Key::from(super::join(&self.prefix, key))
    }

    fn err(&self, key: &str) -> impl Fn(object_store::Error) -> StorageError + '_ {
        let url = super::join(&self.url, key);
        move |e| StorageError::Backend {
            url: url.clone(),
            message: e.to_string(),
        }
    }
}

impl Storage for ObjectRoot {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn local_root(&self) -> Option<&Path> {
        None
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let payload = PutPayload::from(bytes.to_vec());
        self.rt
            .block_on(self.store.put(&self.key(key), payload))
            .map_err(self.err(key))?;
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self
            .rt
            .block_on(self.store.put_opts(&self.key(key), payload, opts))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let got = self.rt.block_on(async {
            match self.store.get(&self.key(key)).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        Ok(got.map_err(self.err(key))?.map(|b| b.to_vec()))
    }

    fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        let mut src = std::fs::File::open(file).map_err(FsError::at(file))?;
        let mut w = BufWriter::with_capacity(self.store.clone(), self.key(key), MULTIPART_BYTES);
        let mut chunk = vec![0u8; MULTIPART_BYTES];
        let sent: Result<(), StorageError> = self.rt.block_on(async {
            loop {
                let n = read_full(&mut src, &mut chunk).map_err(FsError::at(file))?;
                if n == 0 {
                    break;
                }
                w.put(bytes::Bytes::copy_from_slice(&chunk[..n]))
                    .await
                    .map_err(self.err(key))?;
            }
            w.shutdown().await.map_err(|e| StorageError::Backend {
                url: super::join(&self.url, key),
                message: e.to_string(),
            })
        });
        if sent.is_err() {
            // An unfinished multipart upload is invisible; abort it so the bucket keeps no parts.
            let _ = self.rt.block_on(w.abort());
        }
        sent
    }

    fn get_file(&self, key: &str, to: &Path) -> Result<bool, StorageError> {
        let Some(bytes) = self.get(key)? else {
            return Ok(false);
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(FsError::at(dir))?;
        }
        fsutil::write_atomic(to, &bytes)?;
        Ok(true)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let base = self.key(prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&base)).try_collect())
            .map_err(self.err(prefix))?;
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out: Vec<Listed> = metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                full.strip_prefix(&root).map(|k| Listed {
                    key: k.to_string(),
                    bytes: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.rt.block_on(self.store.delete(&self.key(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key)(e)),
        }
    }
}

/// Reads until `buf` is full or the file ends; the count read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
