//! The sharded scenarios of `sharded.rs` against a real S3 server (moto's, started by the test on
//! 127.0.0.1), plus the storage layer's own guarantees there: a put-if-absent refused to the
//! second writer, and a cache part large enough to go up as a multipart upload.

use std::process::Command;

use sha2::{Digest, Sha256};
use vggcache::cache::parts::{rows_to_batch, write_part};
use vggcache::cache::{CacheIdentity, FeatureRow, ModelIdentity};
use vggcache::dataset::Split;
use vggcache::storage::{self, MULTIPART_BYTES};

use crate::common::{self, text};
use crate::sharded::{self, Root};

fn root(server: &common::S3Server, prefix: &str) -> Root {
    Root {
        url: server.url(prefix),
        env: server.env(),
    }
}

#[test]
fn s3_plan_shards_commit_equal_one_machine_run() {
    let test = "s3::s3_plan_shards_commit_equal_one_machine_run";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    sharded::equivalence(&root(&server, "eq1"), &root(&server, "eq2"), d.path());
}

#[test]
fn s3_killed_shard_resumes_and_verify_names_the_orphan() {
    let test = "s3::s3_killed_shard_resumes_and_verify_names_the_orphan";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    sharded::kill_and_resume(&root(&server, "kill"), d.path());
}

#[test]
fn s3_two_attempts_of_one_shard_commit_once() {
    let test = "s3::s3_two_attempts_of_one_shard_commit_once";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    sharded::two_attempts(&root(&server, "race"), d.path());
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn s3_put_if_absent_refuses_the_second_writer_and_large_parts_go_multipart() {
    let test = "s3::s3_put_if_absent_refuses_the_second_writer_and_large_parts_go_multipart";
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let store = storage::open_with(&server.url("store"), &server.env()).unwrap();
    assert!(store.put_if_absent("records/x.json", b"first").unwrap());
    assert!(!store.put_if_absent("records/x.json", b"second").unwrap());
    assert_eq!(store.get("records/x.json").unwrap().unwrap(), b"first");
    assert_eq!(store.get("records/absent.json").unwrap(), None);

    // A real cache part of 25,088-dim rows, bigger than two multipart chunks.
    let dim = 25_088;
    let n = (2 * MULTIPART_BYTES) / (dim * 4) + 20;
    let identity = CacheIdentity {
        model: ModelIdentity {
            fingerprint: "f".repeat(64),
            path: "test.onnx".into(),
            provenance: "test".into(),
            metadata: Default::default(),
        },
        preprocess: vggcache::spec::PreprocessSpec::caffe_bgr(),
        dim,
    };
    let classes = vec!["cat".to_string(), "dog".to_string()];
    let mut state = 0x9e3779b97f4a7c15u64;
    let feats: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / 1e6
                })
                .collect()
        })
        .collect();
    let paths: Vec<String> = (0..n).map(|i| format!("train/cat/{i}.jpg")).collect();
    let rows: Vec<FeatureRow> = (0..n)
        .map(|i| FeatureRow {
            path: &paths[i],
            split: Split::Train,
            label: Some(0),
            class: None,
            content_hash: "00",
            features: &feats[i],
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    let local = d.path().join("part.parquet");
    let key = "parts/shard-00000/part-00000-test.parquet";
    let batch = rows_to_batch(&rows, dim, &classes).unwrap();
    let info = write_part(&local, key, &identity, &classes, vec![batch]).unwrap();
    assert!(
        info.bytes as usize > 2 * MULTIPART_BYTES,
        "{} bytes",
        info.bytes
    );
    store.put_file(key, &local).unwrap();
    let back = d.path().join("back.parquet");
    assert!(store.get_file(key, &back).unwrap());
    let (a, b) = (
        std::fs::read(&local).unwrap(),
        std::fs::read(&back).unwrap(),
    );
    assert_eq!(sha(&a), sha(&b), "round trip");
    assert_eq!(Some(sha(&b)), info.sha256);
    // An independent client sees a multipart object: S3 ETags of multipart uploads end in -PARTS.
    let py = common::python_with(test, &["boto3"]).unwrap();
    let o = Command::new(py)
        .args([
            "-c",
            "import boto3,sys; print(boto3.client('s3', endpoint_url=sys.argv[1], \
             region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')\
             .head_object(Bucket=sys.argv[2], Key=sys.argv[3])['ETag'])",
            &server.endpoint,
            &server.bucket,
            &format!("store/{key}"),
        ])
        .output()
        .unwrap();
    let etag = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(o.status.success(), "{}", text(&o));
    let parts = a.len().div_ceil(MULTIPART_BYTES);
    assert!(
        etag.ends_with(&format!("-{parts}\"")),
        "ETag {etag}, {parts} parts expected"
    );
}

/// A TCP proxy on 127.0.0.1 in front of the S3 server that cuts connections mid-upload: on a
/// connection whose client has sent `PUT `, once `cut_after` more bytes went through, the rest
/// is dropped and both sockets are shut, for the next `cuts` such requests (then it passes
/// everything). Threads end with their sockets; the accept loop when the proxy drops.
struct CutProxy {
    endpoint: String,
    cuts_left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl CutProxy {
    fn start(upstream: &str, cut_after: usize, cuts: usize) -> CutProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let stop = Arc::new(AtomicBool::new(false));
        let (left, halt) = (cuts_left.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let left = left.clone();
                std::thread::spawn(move || pump(client, server, cut_after, &left));
            }
        });
        CutProxy {
            endpoint,
            cuts_left,
            stop,
            accept: Some(accept),
        }
    }

    /// Cuts made so far, of `cuts`.
    fn cut(&self, cuts: usize) -> usize {
        cuts - self.cuts_left.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Copies `client` ⇄ `server`, cutting as [`CutProxy`] describes.
fn pump(
    mut client: std::net::TcpStream,
    mut server: std::net::TcpStream,
    cut_after: usize,
    left: &std::sync::atomic::AtomicUsize,
) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::Ordering;
    let timeout = Some(std::time::Duration::from_secs(30));
    let _ = client.set_read_timeout(timeout);
    let _ = server.set_read_timeout(timeout);
    let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0u8; 16 << 10];
    // Bytes sent since the last `PUT ` of this connection (None before one).
    let mut since_put: Option<usize> = None;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let mut seen: Vec<u8> = tail.clone();
        seen.extend_from_slice(chunk);
        if let Some(at) = seen.windows(4).rposition(|w| w == b"PUT ") {
            since_put = Some(seen.len() - at);
        } else if let Some(s) = &mut since_put {
            *s += n;
        }
        tail = seen[seen.len().saturating_sub(3)..].to_vec();
        if let Some(s) = since_put {
            if s >= cut_after
                && left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                    .is_ok()
            {
                let keep = n.saturating_sub(s - cut_after);
                let _ = server.write_all(&chunk[..keep]);
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                break;
            }
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// Files a run left in `dir` (recursively) whose name starts with `vggcache-part-` or that sit
/// in a staging run folder.
fn leftovers(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("vggcache-part-") || name.starts_with("run-") {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Shard runs whose part uploads are cut mid-request (12 attempts: cut after 100 bytes to 6 KB
/// of a PUT, once, twice, or every time) end in a clean error naming the root or a retried
/// success, never a panic or an abort; no staged part file is left in the temp or staging
/// folder; a clean rerun then completes the shard and the committed root holds every image once.
#[test]
fn s3_uploads_cut_mid_request_fail_cleanly_or_retry() {
    let test = "s3::s3_uploads_cut_mid_request_fail_cleanly_or_retry";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let (tmp, xdg) = (d.path().join("tmp"), d.path().join("xdg"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&xdg).unwrap();
    let started = std::time::Instant::now();
    let (mut failed, mut retried) = (0, 0);
    for (i, (cut_after, cuts)) in [
        (100, 1000),
        (600, 1000),
        (2000, 1000),
        (6000, 1000),
        (100, 1),
        (900, 1),
        (3000, 2),
        (300, 3),
        (1500, 1000),
        (700, 2),
        (5000, 1),
        (200, 1000),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(480),
            "fault attempts take too long"
        );
        let clean = root(&server, &format!("cut{i}"));
        clean.plan(&imgs, 1, 6);
        let proxy = CutProxy::start(&server.endpoint, cut_after, cuts);
        let mut env = server.env();
        for (k, v) in env.iter_mut() {
            if k == "AWS_ENDPOINT" {
                *v = proxy.endpoint.clone();
            }
        }
        let faulty = Root {
            url: clean.url.clone(),
            env,
        };
        let o = faulty
            .shard(0, 1, &[])
            .env("TMPDIR", &tmp)
            .env("XDG_CACHE_HOME", &xdg)
            .output()
            .unwrap();
        let t = text(&o);
        let code = o.status.code();
        assert!(
            !matches!(code, Some(101) | Some(134) | None) && !t.contains("panicked"),
            "attempt {i} (cut after {cut_after} bytes, {cuts} cuts): {code:?} {t}"
        );
        if o.status.success() {
            retried += 1;
        } else {
            failed += 1;
            assert!(
                code == Some(1) && t.contains(&clean.url),
                "attempt {i}: a failure names the root: {t}"
            );
        }
        eprintln!(
            "attempt {i}: cut after {cut_after} B, {} of {cuts} cuts made: {}",
            proxy.cut(cuts),
            if o.status.success() {
                "retried, succeeded".to_string()
            } else {
                format!("failed cleanly: {}", t.lines().last().unwrap_or(""))
            }
        );
        drop(proxy);
        let left = leftovers(&tmp)
            .into_iter()
            .chain(leftovers(&xdg))
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "attempt {i} left {left:?}");
        // The root is consistent: a clean rerun finishes the shard, the commit lists every image
        // once (`table` refuses a row listed twice).
        let o = clean.shard(0, 1, &[]).output().unwrap();
        assert!(o.status.success(), "attempt {i}: clean rerun: {}", text(&o));
        let t = clean.ok(&["cache", "commit", &clean.url]);
        assert!(t.contains("24 rows"), "attempt {i}: {t}");
        assert_eq!(clean.rows(d.path()).len(), 24, "attempt {i}");
    }
    eprintln!("{failed} attempts failed cleanly, {retried} succeeded after retries");
    assert!(failed > 0, "no attempt was cut hard enough to fail");
}

/// `cache gc` on S3 with orphaned keys holding `%`, `#` and `%2E%2E`: what it reports deleted is
/// exactly what disappeared from the bucket, and the committed parts stay.
#[test]
fn s3_gc_reports_exactly_the_keys_it_deleted() {
    let test = "s3::s3_gc_reports_exactly_the_keys_it_deleted";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let Some(py) = common::python_with(test, &["boto3"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let r = root(&server, "gc");
    r.plan(&imgs, 1, 12);
    r.all_shards_and_commit(1, &[]);
    let boto = |code: &str| {
        let o = Command::new(&py)
            .args([
                "-c",
                &format!(
                    "import boto3,sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], \
                     region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')\n\
                     b = sys.argv[2]\n{code}"
                ),
                &server.endpoint,
                &server.bucket,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Orphaned parts (named as an attempt's parts are) with characters object_store encodes.
    let odd = [
        "gc/parts/shard-00000/part-00000-x%41y.parquet",
        "gc/parts/shard-00000/part-00001-a#b.parquet",
        "gc/parts/shard-00000/part-00000-100%.parquet",
        "gc/parts/%2E%2E/part-00000-up.parquet",
    ];
    for k in odd {
        boto(&format!(
            "s3.put_object(Bucket=b, Key={k:?}, Body=b'orphan')"
        ));
    }
    let list = "print('\\n'.join(sorted(o['Key'] for o in \
                s3.list_objects_v2(Bucket=b, Prefix='gc/parts/').get('Contents', []))))";
    let before: Vec<String> = boto(list).lines().map(String::from).collect();
    let t = r.ok(&["cache", "gc", &r.url]);
    let after: Vec<String> = boto(list).lines().map(String::from).collect();
    let gone: Vec<&String> = before.iter().filter(|k| !after.contains(k)).collect();
    let reported: usize = t
        .split("deleted ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {t}"));
    assert_eq!(
        reported,
        gone.len(),
        "reported vs deleted: {t}\ngone: {gone:?}"
    );
    assert!(
        gone.iter().all(|k| odd.contains(&k.as_str())),
        "only orphans are deleted: {gone:?}"
    );
    for k in &odd[..3] {
        assert!(
            !after.iter().any(|a| a == k),
            "{k} still there: {after:?}\n{t}"
        );
    }
    assert_eq!(r.rows(d.path()).len(), 24, "committed parts stay readable");
}
