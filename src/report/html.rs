//! The report as one self-contained HTML page: no network, no script, every image inline (the
//! learning curves as SVG, JPEG thumbnails as data URIs), so the file can be mailed or archived.
//!
//! Sections (each a `<section id=…>`): `facts` (provenance and counts), `curves`, `confusion`,
//! `per-class`, `compare`, `confident-wrong`, `unsure-right`, `label-issues`, `leakage`,
//! `skipped`. A case's image is an `<img class="thumb">`, or a `<div class="thumb missing">` when
//! the file cannot be read: a missing image is shown, never an error.

use std::fmt::Write;
use std::path::Path;

use base64::Engine as _;

use super::review::{Case, LabelReview, Review};
use super::CompareReport;
use crate::dataset::{decode_rgb8, DecodeLimits};

/// Longest side of a thumbnail in pixels: 1,000 thumbnails stay a few MB.
pub const THUMB_SIDE: u32 = 128;

/// Everything the page shows; built by the `report` command from a run and its cache.
pub struct Page<'a> {
    /// Title of the page.
    pub title: String,
    /// `(name, value)` lines of the header: trunk, cache, counts.
    pub facts: Vec<(String, String)>,
    /// Class names, index = label.
    pub classes: &'a [String],
    /// The run's learning curves as an inline `<svg>` element (axis labels, numbers and legend as
    /// `<text>`, drawn by the browser); `Err`: why there are none, shown in their place.
    pub curves: Result<String, String>,
    /// The review of the validation predictions: mistakes, label issues, leakage.
    pub review: &'a Review,
    /// The comparison of models, if one was run.
    pub compare: Option<&'a CompareReport>,
    /// The out-of-fold label review of the train images; `None` when it was not run.
    pub labels: Option<&'a LabelReview>,
    /// `(val path, train path)` pairs with identical features.
    pub leakage: &'a [(String, String)],
    /// `(path, reason)` of images extraction skipped.
    pub skipped: &'a [(String, String)],
    /// The image folder the cached paths are relative to; `None`: no thumbnails.
    pub images: Option<&'a Path>,
}

/// `s` with `& < > " '` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JPEG thumbnail (longest side [`THUMB_SIDE`], EXIF orientation applied) of `path` as a
/// data URI; the reason when it cannot be made.
pub fn thumbnail_uri(path: &Path) -> Result<String, String> {
    let img = decode_rgb8(path, &DecodeLimits::default())?;
    let (w, h) = (img.width(), img.height());
    let scale = f64::from(THUMB_SIDE) / f64::from(w.max(h));
    let (tw, th) = if scale < 1.0 {
        (
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        )
    } else {
        (w, h)
    };
    let small = image::imageops::thumbnail(&img, tw, th);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .map_err(|e| format!("encoding the thumbnail: {e}"))?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f4f4f4}td.name,th.name{text-align:left}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}\
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}.cases{display:flex;flex-wrap:wrap;gap:.8em}\
figure{margin:0;width:140px;font-size:.8em}figure img,.thumb.missing{width:128px;height:128px;object-fit:contain;background:#eee;display:block}\
.thumb.missing{display:flex;align-items:center;justify-content:center;color:#a00;text-align:center}\
.wrong{color:#b00}.note{color:#666;font-size:.9em}.curves svg{max-width:100%;height:auto}";

/// The page as HTML.
pub fn render(p: &Page) -> String {
    let mut h = String::new();
    let name = |k: usize| class_name(p.classes, k);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        escape(&p.title),
        escape(&p.title)
    );
    h.push_str("<section id=\"facts\"><dl>");
    for (k, v) in &p.facts {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    h.push_str("</dl></section>");

    h.push_str("<section id=\"curves\"><h2>Learning curves</h2>");
    match &p.curves {
        Ok(svg) => {
            let _ = write!(
                h,
                "<div class=\"curves\">{svg}</div><p class=\"note\">the kept epoch is the one whose \
                 head was saved: the lowest loss on the selection split carved from train, or the \
                 last epoch without one</p>"
            );
        }
        Err(why) => {
            let _ = write!(
                h,
                "<p class=\"note\">no learning curves: {}</p>",
                escape(why)
            );
        }
    }
    h.push_str("</section>");

    let r = p.review;
    h.push_str("<section id=\"confusion\"><h2>Confusion matrix (val)</h2><table><tr><th class=\"name\">true \\ predicted</th>");
    for k in 0..p.classes.len() {
        let _ = write!(h, "<th>{}</th>", name(k));
    }
    h.push_str("</tr>");
    for (t, row) in r.confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        let _ = write!(h, "<tr><th class=\"name\">{}</th>", name(t));
        for &c in row {
            let share = if total > 0 {
                c as f64 / total as f64
            } else {
                0.0
            };
            // Shade by the row-normalised share; the cell shows both.
            let _ = write!(
                h,
                "<td style=\"background:rgba(40,90,200,{:.3})\">{c} <span class=\"note\">({:.1}%)</span></td>",
                0.6 * share,
                100.0 * share
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></section>");

    h.push_str("<section id=\"per-class\"><h2>Per class (val)</h2><table><tr><th class=\"name\">class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
    for (k, (prec, rec, f1, support)) in r.per_class.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td class=\"name\">{}</td><td>{prec:.3}</td><td>{rec:.3}</td><td>{f1:.3}</td><td>{support}</td></tr>",
            name(k)
        );
    }
    h.push_str("</table></section>");

    if let Some(c) = p.compare {
        h.push_str("<section id=\"compare\"><h2>Models on the same features</h2><table><tr><th class=\"name\">model</th><th>accuracy</th><th>log loss</th><th>fit s</th><th>iterations</th></tr>");
        for m in &c.rows {
            let iterations = match (m.iterations, m.converged) {
                (Some(i), Some(false)) => format!("{i} (not converged)"),
                (Some(i), _) => i.to_string(),
                (None, _) => "–".into(),
            };
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.name),
                m.accuracy,
                m.log_loss,
                if m.fit_seconds.is_finite() {
                    format!("{:.2}", m.fit_seconds)
                } else {
                    "–".into()
                },
                escape(&iterations)
            );
        }
        h.push_str("</table>");
        for sec in &c.sections {
            let _ = write!(h, "<h3>{}</h3><table><tr>", escape(&sec.title));
            for col in &sec.header {
                let _ = write!(h, "<th>{}</th>", escape(col));
            }
            h.push_str("</tr>");
            for row in &sec.rows {
                h.push_str("<tr>");
                for cell in row {
                    let _ = write!(h, "<td>{}</td>", escape(cell));
                }
                h.push_str("</tr>");
            }
            h.push_str("</table>");
        }
        for n in &c.notes {
            let _ = write!(h, "<p class=\"note\">{}</p>", escape(n));
        }
        h.push_str("</section>");
    }

    cases_section(
        &mut h,
        p,
        "confident-wrong",
        "Most confidently wrong (val)",
        &r.confident_wrong,
    );
    cases_section(
        &mut h,
        p,
        "unsure-right",
        "Least confident right (val)",
        &r.unsure_right,
    );
    match p.labels {
        Some(l) => cases_section(
            &mut h,
            p,
            "label-issues",
            "Likely label errors (train, out-of-fold logistic)",
            &l.issues,
        ),
        None => h.push_str(
            "<section id=\"label-issues\"><h2>Likely label errors</h2><p class=\"note\">not \
             computed for this page: <code>vggcache report --run RUN</code> scores every train image \
             out of fold</p></section>",
        ),
    }
    if let Some(l) = p.labels.filter(|l| !l.confused.is_empty()) {
        h.push_str("<p>Most confused pairs out of fold: ");
        let pairs: Vec<String> = l
            .confused
            .iter()
            .take(10)
            .map(|&(t, q, n)| format!("{} → {} ({n})", name(t), name(q)))
            .collect();
        h.push_str(&pairs.join(", "));
        h.push_str("</p>");
    }

    h.push_str("<section id=\"leakage\"><h2>Val images also in train</h2>");
    if p.leakage.is_empty() {
        h.push_str("<p>none: no val image has features identical to a train image</p>");
    } else {
        h.push_str("<table><tr><th class=\"name\">val</th><th class=\"name\">train</th></tr>");
        for (v, t) in p.leakage {
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
                escape(v),
                escape(t)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");

    let _ = write!(
        h,
        "<section id=\"skipped\"><h2>Skipped at extraction ({})</h2>",
        p.skipped.len()
    );
    if !p.skipped.is_empty() {
        h.push_str("<table><tr><th class=\"name\">path</th><th class=\"name\">reason</th></tr>");
        for (path, why) in p.skipped.iter().take(200) {
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
                escape(path),
                escape(why)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section></body></html>\n");
    h
}

/// Class `k`'s name, escaped (`?` when out of range).
fn class_name(classes: &[String], k: usize) -> String {
    escape(classes.get(k).map_or("?", String::as_str))
}

/// A section of case thumbnails with true class, predicted class and probabilities.
fn cases_section(h: &mut String, p: &Page, id: &str, title: &str, cases: &[Case]) {
    let name = |k: usize| class_name(p.classes, k);
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{}</h2><div class=\"cases\">",
        escape(title)
    );
    if cases.is_empty() {
        h.push_str("<p class=\"note\">none</p>");
    }
    for c in cases {
        let img = match p.images {
            // Row paths come from the cache: read only under the given image folder.
            Some(root) => crate::safe_path::resolve_under(root, &c.path)
                .map_err(|e| e.to_string())
                .and_then(|p| thumbnail_uri(&p)),
            None => Err("no image folder given (--images)".into()),
        };
        h.push_str("<figure>");
        match img {
            Ok(uri) => {
                let _ = write!(
                    h,
                    "<img class=\"thumb\" alt=\"{}\" src=\"{uri}\">",
                    escape(&c.path)
                );
            }
            Err(why) => {
                let _ = write!(
                    h,
                    "<div class=\"thumb missing\" title=\"{}\">missing</div>",
                    escape(&why)
                );
            }
        }
        let _ = write!(
            h,
            "<figcaption>{}<br>given <b>{}</b> ({:.2})<br>predicted <b class=\"{}\">{}</b> ({:.2})</figcaption></figure>",
            escape(&c.path),
            name(c.label),
            c.p_label,
            if c.predicted == c.label { "" } else { "wrong" },
            name(c.predicted),
            c.p_predicted
        );
    }
    h.push_str("</div></section>");
}
