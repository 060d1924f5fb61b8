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
