//! The HTML report of a real run (real photos, the tiny trunk, a trained head), rendered by
//! headless Chromium: it loads without a console message, its screenshot is not blank, the DOM
//! holds every section and the right count of thumbnails, a deleted image shown as missing, and
//! the learning curves' axis labels, epoch numbers and legend as text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, text};

fn vggcache(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(args)
        .output()
        .expect("run vggcache")
}

/// Headless Chromium on `page` with `flags` (bounded by `timeout 120`); its own profile folder.
fn chromium(exe: &Path, profile: &Path, flags: &[&str], page: &Path) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

/// Lines Chromium logged from the page's console (any level: the report has no script at all).
fn console_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

#[test]
fn report_renders_in_headless_chromium() {
    let t = "report_renders_in_headless_chromium";
    let Some(data) = common::test_data(t, "catsdogs") else {
        return;
    };
    let Some(chrome) = common::chromium(t) else {
        return;
    };
    if common::ort(t).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("data");
    let (n_train, n_val) = (10, 4);
    for (split, n) in [("train", n_train), ("val", n_val)] {
        for class in ["cat", "dog"] {
            let to = imgs.join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            for f in common::first_images(&data.join(split).join(class), n) {
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let cache = d.path().join("cache");
    let o = common::extract(&common::tiny_trunk(), &imgs, &cache, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = d.path().join("runs");
    let o = vggcache(&[
        "train-head".as_ref(),
        "--features".as_ref(),
        cache.as_os_str(),
        "--runs-dir".as_ref(),
        runs.as_os_str(),
        "--name".as_ref(),
        "r".as_ref(),
        "--hidden".as_ref(),
        "16".as_ref(),
        "--epochs".as_ref(),
        "3".as_ref(),
        "--batch-size".as_ref(),
        "8".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // One val image goes away after extraction: the page must show it as missing.
    let gone = common::first_images(&imgs.join("val/cat"), 1).remove(0);
    std::fs::remove_file(&gone).unwrap();
    let page = d.path().join("report.html");
    let o = vggcache(&[
        "report".as_ref(),
        "--run".as_ref(),
        runs.join("r").as_os_str(),
        "--images".as_ref(),
        imgs.as_os_str(),
        "--out".as_ref(),
        page.as_os_str(),
        "--top".as_ref(),
        "50".as_ref(),
        "--folds".as_ref(),
        "3".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let profile = d.path().join("chrome");
    let dom = chromium(&chrome, &profile, &["--dump-dom"], &page);
    assert!(dom.status.success(), "chromium --dump-dom: {}", text(&dom));
    assert_eq!(
        console_lines(&dom),
        Vec::<String>::new(),
        "console messages"
    );
    let html = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "facts",
        "curves",
        "confusion",
        "per-class",
        "confident-wrong",
        "unsure-right",
        "label-issues",
        "leakage",
        "skipped",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\"")),
            "section {id} missing"
        );
    }
    // Every val image is listed (wrong or right: --top covers them all), and every train image
    // among the likely label errors; the deleted one as missing.
    let figures = html.matches("<figure>").count();
    assert_eq!(figures, 2 * n_val + 2 * n_train, "one figure per case");
    assert_eq!(html.matches("class=\"thumb missing\"").count(), 1);
    assert_eq!(html.matches("<img class=\"thumb\"").count(), figures - 1);
    // The learning curves are inline SVG whose axis labels, numbers and legend are text the
    // browser draws (issue 33; the page inlined a PNG without any text before).
    let curves = html
        .split("<section id=\"curves\"")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("curves section");
    assert!(curves.contains("<svg"), "curves inline as SVG: {curves}");
    let texts: Vec<&str> = curves
        .split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>').and_then(|(_, r)| r.split_once("</text>")))
        .map(|(inner, _)| inner.trim())
        .collect();
    let kept = std::fs::read_to_string(runs.join("r/metrics.csv"))
        .expect("metrics.csv")
        .lines()
        .skip(1)
        .find(|l| l.split(',').nth(6) == Some("1"))
        .and_then(|l| l.split(',').next().map(String::from))
        .expect("a kept epoch in metrics.csv");
    for want in [
        "epoch",
        "loss",
        "accuracy",
        "train",
        "val",
        "1",
        "2",
        "3",
        &format!("kept epoch {kept}"),
    ] {
        assert!(
            texts.contains(&want),
            "no <text>{want}</text> in the curves: {texts:?}"
        );
    }

    let shot = d.path().join("shot.png");
    let o = chromium(
        &chrome,
        &profile,
        &[
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    assert!(o.status.success(), "chromium --screenshot: {}", text(&o));
    let img = image::open(&shot).expect("screenshot").to_rgb8();
    let inked = img
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 200))
        .count();
    let share = inked as f64 / (img.width() * img.height()) as f64;
    assert!(
        share > 0.05,
        "screenshot nearly blank: {share:.3} of pixels inked"
    );

    // The console check can fail: a page that logs is caught.
    let bad: PathBuf = d.path().join("bad.html");
    std::fs::write(&bad, "<p>x</p><script>console.error('boom')</script>").unwrap();
    let o = chromium(&chrome, &profile, &["--dump-dom"], &bad);
    assert_eq!(console_lines(&o).len(), 1, "{}", text(&o));
}
