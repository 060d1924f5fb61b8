//! Lays out a head as an ONNX model: checks the arrays, folds the scaler into the first Gemm,
//! writes the head alone ([`head_model_bytes`]) or appended to a trunk ([`with_trunk_model_bytes`]).

use super::fields::*;
use super::proto::{self, Field};
use super::*;

/// Checks shapes, finiteness and the scaler; returns `(d_in, n_classes)`.
pub(super) fn check_head(h: &HeadGraph) -> Result<(usize, usize), ExportError> {
    let Some(first) = h.layers.first() else {
        return Err(ExportError::EmptyHead);
    };
    let d_in = first.0.nrows();
    let mut prev = d_in;
    for (layer, (w, b)) in h.layers.iter().enumerate() {
        let (rows, cols) = w.dim();
        if rows != prev {
            return Err(ExportError::LayerShape {
                layer,
                what: "weight rows",
                expected: prev,
                found: rows,
            });
        }
        if b.len() != cols {
            return Err(ExportError::LayerShape {
                layer,
                what: "bias length",
                expected: cols,
                found: b.len(),
            });
        }
        if let Some(index) = w.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer,
                what: "weight",
                index,
            });
        }
        if let Some(index) = b.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer,
                what: "bias",
                index,
            });
        }
        prev = cols;
    }
    if h.classes.len() != prev {
        return Err(ExportError::ClassCount {
            expected: prev,
            found: h.classes.len(),
        });
    }
    if let Some((mean, std)) = &h.scaler {
        for (what, v) in [("mean", mean), ("std", std)] {
            if v.len() != d_in {
                return Err(ExportError::ScalerShape {
                    what,
                    expected: d_in,
                    found: v.len(),
                });
            }
        }
        if let Some(index) = mean.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer: 0,
                what: "scaler mean",
                index,
            });
        }
        if let Some((index, &value)) = std
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(ExportError::BadStd { index, value });
        }
    }
    Ok((d_in, prev))
}

/// Folds `(x - mean) / std` into the layer `x · wtᵀ + b`: returns `(wt / std column-wise,
/// b - wt · (mean / std))`, computed in f64. `wt: (d_out, d_in)` (the weight in PyTorch's and
/// Gemm-`transB`'s order), `b: (d_out,)`, `mean, std: (d_in,)`.
pub(super) fn fold_scaler(
    wt: ArrayView2<f32>,
    b: ArrayView1<f32>,
    mean: ArrayView1<f32>,
    std: ArrayView1<f32>,
) -> (Array2<f32>, Array1<f32>) {
    let mut w2 = Array2::<f32>::zeros(wt.raw_dim());
    let mut b2 = b.mapv(f64::from);
    for ((row, mut out), acc) in wt.rows().into_iter().zip(w2.rows_mut()).zip(b2.iter_mut()) {
        for (i, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            let s = f64::from(std[i]);
            *o = (f64::from(v) / s) as f32;
            *acc -= f64::from(mean[i]) / s * f64::from(v);
        }
    }
    (w2, b2.mapv(|v| v as f32))
}

/// The head's nodes and initializers reading `input` (shape `[N, D]`), writing [`OUTPUT_NAME`];
/// internal names start with `prefix`.
pub(super) fn head_graph_fields<'a>(
    h: &HeadGraph<'a>,
    input: &str,
    prefix: &str,
) -> Vec<Field<'a>> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut current = input.to_string();
    let last = h.layers.len() - 1;
    for (i, (w, b)) in h.layers.iter().enumerate() {
        let (w_name, b_name) = (
            format!("{prefix}fc{i}.weight"),
            format!("{prefix}fc{i}.bias"),
        );
        // Written as (d_out, d_in) with Gemm transB = 1: the head's own storage order, so the
        // 100 M weights of the first layer are copied in memory order.
        let wt = (*w).reversed_axes();
        let (d_out, d_in) = wt.dim();
        let (w_field, b_field) = match (&h.scaler, i) {
            (Some((mean, std)), 0) => {
                let (w2, b2) = fold_scaler(wt, *b, *mean, *std);
                (
                    Field::floats_owned(f::TENSOR_RAW_DATA, w2.into_dyn()),
                    Field::floats_owned(f::TENSOR_RAW_DATA, b2.into_dyn()),
                )
            }
            _ => (
                Field::floats_2d(f::TENSOR_RAW_DATA, wt),
                Field::floats_1d(f::TENSOR_RAW_DATA, *b),
            ),
        };
        inits.push(initializer(&w_name, &[d_out, d_in], w_field));
        inits.push(initializer(&b_name, &[d_out], b_field));
        let out = if i == last {
            format!("{prefix}logits")
        } else {
            format!("{prefix}fc{i}")
        };
        nodes.push(node(
            "Gemm",
            &format!("{prefix}gemm{i}"),
            &[&current, &w_name, &b_name],
            &[&out],
            vec![int_attr("transB", 1)],
        ));
        current = out;
        if i != last {
            let relu = format!("{prefix}relu{i}");
            nodes.push(node("Relu", &relu, &[&current], &[&relu], vec![]));
            current = relu;
        }
    }
    nodes.push(node(
        "Softmax",
        &format!("{prefix}softmax"),
        &[&current],
        &[OUTPUT_NAME],
        vec![int_attr("axis", 1)],
    ));
    nodes.extend(inits);
    nodes
}

/// Metadata entries the exporter writes itself, then the head's own; a head key equal to one of
/// ours is an error.
pub(super) fn head_metadata(
    h: &HeadGraph,
    d_in: usize,
) -> Result<Vec<(String, String)>, ExportError> {
    let mut dims = vec![d_in.to_string()];
    dims.extend(h.layers.iter().map(|(w, _)| w.ncols().to_string()));
    let ours = [
        (
            "classes".to_string(),
            serde_json::Value::from(h.classes.clone()).to_string(),
        ),
        ("vggcache.head_layers".to_string(), dims.join(",")),
        (
            "vggcache.feature_scaling".to_string(),
            if h.scaler.is_some() {
                "folded into the first Gemm"
            } else {
                "none"
            }
            .to_string(),
        ),
        (
            "vggcache.output".to_string(),
            format!(
                "{OUTPUT_NAME}: softmax over classes, [N, {}]",
                h.classes.len()
            ),
        ),
    ];
    if let Some(key) = h
        .metadata
        .keys()
        .find(|k| ours.iter().any(|(o, _)| o == *k))
    {
        return Err(ExportError::ReservedMetadata { key: key.clone() });
    }
    Ok(ours
        .into_iter()
        .chain(h.metadata.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect())
}

/// The head alone as an ONNX model: input `input_name` `[N, D]` float → Gemm, Relu, ..., Gemm,
/// Softmax → [`OUTPUT_NAME`] `[N, C]` float. Opset [`OPSET`], IR [`IR_VERSION`]; `metadata_props`
/// holds `classes` (a JSON array), the layer sizes, whether scaling was folded, and `h.metadata`.
///
/// Errors: inconsistent shapes, non-finite weights, a bad scaler, a reserved metadata key.
pub fn head_model_bytes(h: &HeadGraph, input_name: &str) -> Result<Vec<u8>, ExportError> {
    let (d_in, n_classes) = check_head(h)?;
    let mut graph = head_graph_fields(h, input_name, "head/");
    graph.push(Field::str(f::GRAPH_NAME, "vggcache_head"));
    graph.push(Field::str(
        f::GRAPH_DOC,
        "vggcache head: Gemm/Relu layers, softmax; dropout removed",
    ));
    graph.push(Field::Msg(
        f::GRAPH_INPUT,
        value_info(input_name, &[Dim::Param("N"), Dim::Value(d_in)]),
    ));
    graph.push(Field::Msg(
        f::GRAPH_OUTPUT,
        value_info(OUTPUT_NAME, &[Dim::Param("N"), Dim::Value(n_classes)]),
    ));
    let mut model = vec![
        Field::Varint(f::MODEL_IR_VERSION, IR_VERSION),
        Field::str(f::MODEL_PRODUCER_NAME, "vggcache"),
        Field::str(f::MODEL_PRODUCER_VERSION, env!("CARGO_PKG_VERSION")),
        Field::str(f::MODEL_DOC, "Classifier head on cached trunk features"),
        Field::Msg(
            f::MODEL_OPSET_IMPORT,
            vec![
                Field::str(f::OPSET_DOMAIN, ""),
                Field::Varint(f::OPSET_VERSION, OPSET),
            ],
        ),
        Field::Msg(f::MODEL_GRAPH, graph),
    ];
    model.extend(head_metadata(h, d_in)?.iter().map(|(k, v)| entry(k, v)));
    Ok(proto::encode(&model))
}

/// Trunk and head as one model: `trunk_onnx`'s graph, unchanged, then Flatten(`trunk_output_name`,
/// axis 1) → the head → [`OUTPUT_NAME`] `[N, C]`. The trunk's inputs, outputs (its feature output
/// stays as a second output), opsets, IR version and metadata (preprocessing) are kept; the head's
/// metadata is added (a key already in the trunk with the same value is not repeated).
///
/// The result is `trunk_onnx` followed by an appended `ModelProto` (see the module doc). A trunk
/// with external tensor data ([`ModelSummary::has_external_data`]) still refers to its data file by
/// relative path, so the result must be saved beside that file.
///
/// Errors: a malformed trunk, no graph, no tensor `trunk_output_name`, a clash with the head's
/// names, trunk IR < [`MIN_TRUNK_IR`] or default opset < [`MIN_TRUNK_OPSET`], a metadata key the
/// trunk holds with another value, and the head errors of [`head_model_bytes`].
pub fn with_trunk_model_bytes(
    trunk_onnx: &[u8],
    trunk_output_name: &str,
    h: &HeadGraph,
) -> Result<Vec<u8>, ExportError> {
    let (d_in, n_classes) = check_head(h)?;
    let trunk = inspect(trunk_onnx)?;
    if trunk.ir_version < MIN_TRUNK_IR {
        return Err(ExportError::OldIr {
            found: trunk.ir_version,
        });
    }
    match trunk.default_opset() {
        Some(v) if v >= MIN_TRUNK_OPSET => {}
        found => return Err(ExportError::Opset { found }),
    }
    if !trunk.tensor_names.contains(trunk_output_name) {
        return Err(ExportError::MissingTensor {
            name: trunk_output_name.to_string(),
            outputs: trunk.graph_outputs.clone(),
        });
    }
    const PREFIX: &str = "vggcache_head/";
    if let Some(name) = trunk
        .tensor_names
        .iter()
        .find(|n| n.starts_with(PREFIX) || n.as_str() == OUTPUT_NAME)
    {
        return Err(ExportError::NameClash { name: name.clone() });
    }

    let flat = format!("{PREFIX}flatten");
    let mut graph = vec![node(
        "Flatten",
        &flat,
        &[trunk_output_name],
        &[&flat],
        vec![int_attr("axis", 1)],
    )];
    graph.extend(head_graph_fields(h, &flat, PREFIX));
    // Batch size left unnamed: the trunk may call it anything, or fix it.
    graph.push(Field::Msg(
        f::GRAPH_OUTPUT,
        value_info(OUTPUT_NAME, &[Dim::Unknown, Dim::Value(n_classes)]),
    ));
    let mut appended = vec![Field::Msg(f::MODEL_GRAPH, graph)];
    let existing: BTreeMap<&str, &str> = trunk
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in head_metadata(h, d_in)? {
        match existing.get(k.as_str()) {
            None => appended.push(entry(&k, &v)),
            Some(&old) if old == v => {}
            Some(&old) => {
                return Err(ExportError::MetadataConflict {
                    key: k,
                    existing: old.to_string(),
                    new: v,
                })
            }
        }
    }
    let tail = proto::encode(&appended);
    let mut out = Vec::with_capacity(trunk_onnx.len() + tail.len());
    out.extend_from_slice(trunk_onnx);
    out.extend_from_slice(&tail);
    Ok(out)
}
