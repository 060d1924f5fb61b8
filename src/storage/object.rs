//! [`ObjectRoot`]: a prefix of an object store bucket as a [`Storage`] root, through the
//! `object_store` crate. Each call runs to completion on a small tokio runtime owned by the root,
//! so callers stay synchronous.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

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
        check_settings(url, &effective_settings(settings))?;
        let mut builder = AmazonS3Builder::from_env().with_retry(retry_config());
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

    /// The object-store path of `key`, taken as the literal object name (percent-encoded once,
    /// on the wire, by the client). `Key::from` would encode `%`, `#`, … a second time, so a
    /// listed key could not be deleted or read back.
    fn key(&self, key: &str) -> Result<Key, StorageError> {
        Key::parse(super::join(&self.prefix, key)).map_err(|e| StorageError::BadKey {
            url: self.url.clone(),
            key: key.into(),
            reason: e.to_string(),
        })
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
            .block_on(self.store.put(&self.key(key)?, payload))
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
            .block_on(self.store.put_opts(&self.key(key)?, payload, opts))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let location = self.key(key)?;
        let got = self.rt.block_on(async {
            match self.store.get(&location).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        Ok(got.map_err(self.err(key))?.map(|b| b.to_vec()))
    }

    fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        let location = self.key(key)?;
        let url = super::join(&self.url, key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.rt.block_on(self.upload(&location, file)) {
                Ok(()) => return Ok(()),
                Err(Failed::Local(e)) => return Err(e.into()),
                Err(Failed::Store(e)) if attempt < UPLOAD_ATTEMPTS && retryable(&e) => {
                    std::thread::sleep(UPLOAD_BACKOFF * (1 << (attempt - 1)));
                }
                Err(Failed::Store(e)) => {
                    return Err(StorageError::Upload {
                        url,
                        file: file.to_path_buf(),
                        attempts: attempt,
                        cause: e.to_string(),
                    })
                }
            }
        }
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
        let base = self.key(prefix)?;
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
        match self.rt.block_on(self.store.delete(&self.key(key)?)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key)(e)),
        }
    }
}

/// Whole uploads tried per [`Storage::put_file`] (each after object_store's own retries of its
/// requests); the waits between them double from [`UPLOAD_BACKOFF`].
const UPLOAD_ATTEMPTS: u32 = 3;
const UPLOAD_BACKOFF: Duration = Duration::from_millis(500);
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// object_store's retries of single requests: 5 retries within a minute, waits from 0.1 s to
/// 4 s (its default, 10 within 3 minutes, lets a dead endpoint hang a run for minutes).
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    }
}

/// Why one upload attempt failed: the local file, or the store.
enum Failed {
    Local(FsError),
    Store(object_store::Error),
}

impl From<object_store::Error> for Failed {
    fn from(e: object_store::Error) -> Self {
        Failed::Store(e)
    }
}

/// Whether another attempt may succeed: transport and server errors, not refusals (missing
/// bucket, credentials, permissions, preconditions).
fn retryable(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

impl ObjectRoot {
    /// One attempt to upload `file` as `location`: a single PUT below [`MULTIPART_BYTES`], else
    /// a multipart upload in parts of that size, aborted (once) when any step fails. Not
    /// object_store's `BufWriter`: its `abort` after a failed `shutdown` panics.
    async fn upload(&self, location: &Key, file: &Path) -> Result<(), Failed> {
        let mut src = std::fs::File::open(file).map_err(|e| Failed::Local(FsError::at(file)(e)))?;
        let len = src
            .metadata()
            .map_err(|e| Failed::Local(FsError::at(file)(e)))?
            .len();
        if len < MULTIPART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            src.read_to_end(&mut bytes)
                .map_err(|e| Failed::Local(FsError::at(file)(e)))?;
            self.store.put(location, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let mut upload = self.store.put_multipart(location).await?;
        let sent = send_parts(&mut *upload, &mut src, file).await;
        let done = match sent {
            Ok(()) => upload.complete().await.map(|_| ()).map_err(Failed::Store),
            Err(e) => Err(e),
        };
        if done.is_err() {
            // An unfinished multipart upload is invisible; abort it so the bucket keeps no parts.
            let _ = upload.abort().await;
        }
        done
    }
}

/// Reads `src` in [`MULTIPART_BYTES`] parts and uploads them, at most [`PARTS_IN_FLIGHT`] at
/// once; returns when every part is stored.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    src: &mut std::fs::File,
    file: &Path,
) -> Result<(), Failed> {
    let mut in_flight = FuturesUnordered::new();
    loop {
        let mut chunk = vec![0u8; MULTIPART_BYTES];
        let n = read_full(src, &mut chunk).map_err(|e| Failed::Local(FsError::at(file)(e)))?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        in_flight.push(upload.put_part(PutPayload::from(chunk)));
        if in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(r) = in_flight.next().await {
                r?;
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    Ok(())
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

/// The `AWS_*` settings the client will see: the environment's, then `settings` on top (names
/// upper-cased). Values that are not UTF-8 are left out, as object_store leaves them out.
fn effective_settings(settings: &[(String, String)]) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    for (k, v) in settings {
        all.insert(k.to_ascii_uppercase(), v.clone());
    }
    all
}

/// Settings whose value is a URL the client sends requests to.
const URL_SETTINGS: [&str; 5] = [
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_METADATA_ENDPOINT",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Settings object_store reads as booleans.
const BOOL_SETTINGS: [&str; 9] = [
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_S3_EXPRESS",
    "AWS_IMDSV1_FALLBACK",
    "AWS_UNSIGNED_PAYLOAD",
    "AWS_SKIP_SIGNATURE",
    "AWS_DISABLE_TAGGING",
    "AWS_DISABLE_BULK_DELETE",
    "AWS_REQUEST_PAYER",
];

/// object_store's reading of a boolean setting; `None` when it is none of its words.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" | "y" => Some(true),
        "0" | "false" | "off" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// Checks the root URL and the settings that end up in request URLs before a client is built
/// (object_store panics on a request it cannot build, and says only "builder error" for an
/// `http://` endpoint it was not allowed to use).
fn check_settings(url: &str, all: &BTreeMap<String, String>) -> Result<(), StorageError> {
    let bad = |name: &str, value: &str, problem: String, fix: String| StorageError::Setting {
        name: name.into(),
        value: redact(value),
        problem,
        fix,
    };
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let bucket = rest.split('/').next().unwrap_or("");
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(bad(
            "root",
            url,
            format!("{bucket:?} is not a bucket name (letters, digits, '.', '-', '_')"),
            "write the root as s3://BUCKET/PREFIX".into(),
        ));
    }
    for name in URL_SETTINGS {
        if let Some(v) = all.get(name) {
            if let Err(problem) = check_url(v) {
                return Err(bad(
                    name,
                    v,
                    problem,
                    format!(
                        "set {name} to a URL like https://s3.example.com or http://127.0.0.1:9000"
                    ),
                ));
            }
        }
    }
    for name in BOOL_SETTINGS {
        if let Some(v) = all.get(name) {
            if parse_bool(v).is_none() {
                return Err(bad(
                    name,
                    v,
                    "not a boolean".into(),
                    format!("set {name}=true or {name}=false"),
                ));
            }
        }
    }
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(v) = all.get(name) {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(
                    name,
                    v,
                    "not a region name (letters, digits and '-', like us-east-1)".into(),
                    format!("set {name} to the bucket's region, e.g. {name}=us-east-1"),
                ));
            }
        }
    }
    let allow_http = all
        .get("AWS_ALLOW_HTTP")
        .and_then(|v| parse_bool(v))
        .unwrap_or(false);
    for name in ["AWS_ENDPOINT", "AWS_ENDPOINT_URL"] {
        if let Some(v) = all.get(name) {
            if !allow_http && v.to_ascii_lowercase().starts_with("http://") {
                return Err(bad(
                    "AWS_ALLOW_HTTP",
                    all.get("AWS_ALLOW_HTTP").map_or("(unset)", |s| s.as_str()),
                    format!(
                        "{name}={} is a plain http:// endpoint, and plain HTTP is refused unless \
                         AWS_ALLOW_HTTP is true",
                        redact(v)
                    ),
                    format!(
                        "set AWS_ALLOW_HTTP=true (a local or test server), or point {name} at \
                         the server's https:// address"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `Ok` when `v` is an `http://` or `https://` URL with a host (and a port of at most 65535);
/// else what is wrong with it.
fn check_url(v: &str) -> Result<(), String> {
    if let Some(c) = v.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains {c:?}"));
    }
    let lower = v.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &v[8..]
    } else if lower.starts_with("http://") {
        &v[7..]
    } else {
        return Err("not a URL: it must start with http:// or https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("an IPv6 host without its closing ']'".into()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host after the scheme".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("{host:?} is not a host name"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!("{p:?} is not a port (1 to 65535)"));
        }
    }
    Ok(())
}

/// `v` with the user-info of a URL (`user:password@`) replaced by `***`.
fn redact(v: &str) -> String {
    if let Some((scheme, rest)) = v.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<(), StorageError> {
        let all = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_settings("s3://bucket/prefix", &all)
    }

    #[test]
    fn urls_and_values_are_checked_before_a_client_exists() {
        check(&[("AWS_ENDPOINT", "https://s3.example.com")]).unwrap();
        check(&[
            ("AWS_ENDPOINT", "http://127.0.0.1:9000/"),
            ("AWS_ALLOW_HTTP", "true"),
        ])
        .unwrap();
        for (pairs, needle) in [
            (
                vec![("AWS_ENDPOINT", "not-a-url")],
                "AWS_ENDPOINT=not-a-url",
            ),
            (vec![("AWS_ENDPOINT", "http://")], "no host"),
            (vec![("AWS_ENDPOINT", "https://h:99999")], "not a port"),
            (vec![("AWS_ENDPOINT", "https://a b")], "contains"),
            (vec![("AWS_ALLOW_HTTP", "maybe")], "not a boolean"),
            (vec![("AWS_REGION", "us east")], "not a region"),
            (
                vec![("AWS_ENDPOINT", "http://h:1"), ("AWS_ALLOW_HTTP", "false")],
                "set AWS_ALLOW_HTTP=true",
            ),
            (
                vec![("AWS_ENDPOINT", "http://h:1")],
                "AWS_ALLOW_HTTP=(unset)",
            ),
        ] {
            let e = check(&pairs).unwrap_err().to_string();
            assert!(e.contains(needle), "{pairs:?}: {e}");
        }
        let e = check(&[("AWS_ENDPOINT", "http://user:secret@h:1")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret") && e.contains("***@h:1"), "{e}");
        let e = check_settings("s3:///x", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("not a bucket name"), "{e}");
    }
}
