//! `make demo`'s data: the digits ImageFolder written from a scikit-learn wheel (read as a zip,
//! scikit-learn never installed) and a missing `DATA` folder's error, which shows the layout.

use std::path::Path;
use std::process::{Command, Output};

use vggcache::dataset::{decode_rgb8, discover, Layout, Split};

use crate::common;

/// A stand-in for the scikit-learn wheel: a zip holding `sklearn/datasets/data/digits.csv.gz`
/// with `per_digit` rows of each digit (64 pixels in 0..16, then the label), written by `py`.
fn write_wheel(py: &Path, wheel: &Path, per_digit: usize) {
    let code = format!(
        "import gzip, zipfile\n\
         rows = [','.join(str((d * 7 + i * 3 + p) % 17) for p in range(64)) + f',{{d}}'\n\
                 for d in range(10) for i in range({per_digit})]\n\
         with zipfile.ZipFile(r'{}', 'w') as z:\n\
         \x20   z.writestr('sklearn/datasets/data/digits.csv.gz', gzip.compress(('\\n'.join(rows) + '\\n').encode()))\n",
        wheel.display()
    );
    let out = Command::new(py)
        .arg("-c")
        .arg(code)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_digits(py: &Path, out: &Path, wheel: &Path, per_class: usize) -> Output {
    Command::new(py)
        .arg(common::root().join("scripts/tools/make_digits_folder.py"))
        .arg(out)
        .args(["--per-class", &per_class.to_string(), "--wheel"])
        .arg(wheel)
        .output()
        .expect("run make_digits_folder.py")
}

#[test]
fn digits_folder_from_the_wheel_is_an_image_folder() {
    let test = "digits_folder_from_the_wheel_is_an_image_folder";
    let Some(py) = common::python_with(test, &["numpy", "PIL"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let wheel = dir.path().join("scikit_learn-0.0-py3-none-any.whl");
    write_wheel(&py, &wheel, 12);
    let out = dir.path().join("digits");

    let run = make_digits(&py, &out, &wheel, 10);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("handwritten digits") && stdout.contains("scikit_learn-0.0"),
        "the output says what the set is and where it came from: {stdout}"
    );
    assert!(
        !dir.path().join("digits.partial").exists(),
        "the partial folder is renamed"
    );

    let ds = discover(&out, 0.2).expect("the digits folder is a dataset");
    assert_eq!(ds.layout, Layout::ImageFolder);
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert_eq!(ds.classes, digits);
    assert!(ds.skipped.is_empty(), "skipped: {:?}", ds.skipped);
    // 10 a digit (of 12), 30% of each in val: 3 val, 7 train.
    for d in &digits {
        let count = |split| {
            ds.entries
                .iter()
                .filter(|e| e.class.as_ref() == Some(d) && e.split == split)
                .count()
        };
        assert_eq!(
            (count(Split::Train), count(Split::Val)),
            (7, 3),
            "digit {d}"
        );
    }
    let img =
        decode_rgb8(&ds.entries[0].abs_path, &Default::default()).expect("a PNG vggcache reads");
    assert_eq!((img.width(), img.height()), (32, 32));

    // The same arguments again reuse the folder; other ones refuse to touch it.
    let again = make_digits(&py, &out, &wheel, 10);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already written"));
    let other = make_digits(&py, &out, &wheel, 5);
    assert!(
        !other.status.success(),
        "another recipe over the folder is refused"
    );
    assert!(String::from_utf8_lossy(&other.stderr).contains("remove it"));
    assert_eq!(discover(&out, 0.2).unwrap().entries.len(), 100);

    // Not a wheel: an error naming the file, and no folder.
    let bad = dir.path().join("bad.whl");
    std::fs::write(&bad, b"not a zip").unwrap();
    let bad_out = dir.path().join("bad-digits");
    let run = make_digits(&py, &bad_out, &bad, 10);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("bad.whl") && err.contains("scikit-learn wheel"),
        "{err}"
    );
    assert!(!bad_out.exists() && !dir.path().join("bad-digits.partial").exists());
}

#[test]
fn demo_with_a_missing_folder_shows_the_layout_and_installs_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let venv = dir.path().join(".venv");
    let missing = dir.path().join("no-such-images");
    let out = match Command::new("make")
        .current_dir(common::root())
        .arg("demo")
        .arg(format!("DATA={}", missing.display()))
        .arg(format!("VENV={}", venv.display()))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            common::skip(
                "demo_with_a_missing_folder_shows_the_layout_and_installs_nothing",
                common::Why::Setup,
                format!("make not runnable: {e}"),
            );
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a missing DATA folder fails: {stdout}"
    );
    assert!(
        stdout.contains("no-such-images' not found"),
        "names the folder: {stdout}"
    );
    for part in ["DIR/", "train/", "val/", "cat/", "1.jpg"] {
        assert!(
            stdout.contains(part),
            "the layout tree shows {part}: {stdout}"
        );
    }
    assert!(!venv.exists(), "nothing installed before the check");
}
