//! `CACHE/skipped.csv`: the images the last extraction could not use and why (header
//! `path,reason`, through the csv crate, so commas and quotes in paths survive). Each run replaces
//! it whole, atomically, while it holds the cache's lock.

use std::path::Path;

use crate::cache::SKIPPED_FILE;
use crate::fsutil::{write_atomic, FsError};

/// Writes `(relative path, reason)` rows as `cache_dir/skipped.csv`.
pub fn write(cache_dir: &Path, skipped: &[(String, String)]) -> Result<(), FsError> {
    let path = cache_dir.join(SKIPPED_FILE);
    let bytes = to_csv(skipped).map_err(FsError::at(&path))?;
    write_atomic(&path, &bytes)
}

/// `skipped.csv`'s bytes for `(relative path, reason)` rows (header `path,reason`).
pub fn to_csv(skipped: &[(String, String)]) -> std::io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["path", "reason"])?;
    for (p, reason) in skipped {
        w.write_record([p, reason])?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

/// The rows of `cache_dir/skipped.csv`; none when it is absent or unreadable.
pub fn read(cache_dir: &Path) -> Vec<(String, String)> {
    let Ok(mut r) = csv::Reader::from_path(cache_dir.join(SKIPPED_FILE)) else {
        return Vec::new();
    };
    r.records()
        .filter_map(Result::ok)
        .filter(|rec| rec.len() >= 2)
        .map(|rec| (rec[0].to_string(), rec[1].to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_and_quotes_survive_the_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let rows = vec![
            ("bad/zero.jpg".to_string(), "empty file".to_string()),
            (
                "bad/x,y.jpg".to_string(),
                "decode error: \"truncated\"".to_string(),
            ),
        ];
        write(d.path(), &rows).unwrap();
        let text = std::fs::read_to_string(d.path().join("skipped.csv")).unwrap();
        assert_eq!(
            text,
            "path,reason\nbad/zero.jpg,empty file\n\"bad/x,y.jpg\",\"decode error: \"\"truncated\"\"\"\n"
        );
        assert_eq!(read(d.path()), rows);
        assert!(read(&d.path().join("nope")).is_empty());
    }
}
