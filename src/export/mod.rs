//! ONNX export of a trained head (Gemm/Relu/.../Gemm/Softmax), alone or appended to a trunk model.
//!
//! No ONNX crate is used: the private `proto` module writes the protobuf wire format, and this
//! module lays out the ONNX messages (field numbers from `onnx/onnx.proto`, ONNX 1.x). The head
//! model is opset 17, IR version 8: input `[N, D]` float, output [`OUTPUT_NAME`] `[N, C]` float,
//! dropout gone (it is the identity at inference), feature scaling folded into the first Gemm.
//!
//! [`with_trunk_model_bytes`] relies on protobuf merge semantics: parsing a serialized `ModelProto`
//! followed by another parses as their merge: embedded messages (`graph`) merge field by field,
//! repeated fields (nodes, initializers, outputs, `metadata_props`) append, scalars are overwritten
//! (so the appended part sets none). The trunk's bytes are copied unchanged and a small `ModelProto`
//! holding only the head's nodes, initializers, the new output and extra metadata is appended.

mod build;
mod fields;
mod inspect;
mod proto;

pub use build::{head_model_bytes, with_trunk_model_bytes};
pub use inspect::inspect;

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Name of the probabilities output of every exported model.
pub const OUTPUT_NAME: &str = "probabilities";
/// Opset of the default (`ai.onnx`) domain used by [`head_model_bytes`].
pub const OPSET: i64 = 17;
/// IR version written by [`head_model_bytes`] (ONNX 1.10+, readable by every ONNX Runtime ≥ 1.10).
pub const IR_VERSION: i64 = 8;
/// Lowest trunk default-domain opset [`with_trunk_model_bytes`] accepts: Gemm-7 (bias broadcast);
/// Flatten, Relu and Softmax on a 2-D tensor with axis 1 mean the same from opset 1 on.
pub const MIN_TRUNK_OPSET: i64 = 7;
/// Lowest trunk IR version accepted: IR 4 allows initializers that are not graph inputs.
pub const MIN_TRUNK_IR: i64 = 4;

/// A trained head as plain arrays, ready to export.
#[derive(Debug, Clone)]
pub struct HeadGraph<'a> {
    /// `(w: (d_in, d_out), b: (d_out,))` per linear layer, input to output; ReLU between layers.
    pub layers: Vec<(ArrayView2<'a, f32>, ArrayView1<'a, f32>)>,
    /// Feature scaling `(mean, std)`, `(d,)` each, applied as `(x - mean) / std` before the first
    /// layer; folded into it on export: `w' = w / std` (row-wise), `b' = b - (mean / std) · w`.
    pub scaler: Option<(ArrayView1<'a, f32>, ArrayView1<'a, f32>)>,
    /// Class names, index = output column.
    pub classes: Vec<String>,
    /// Extra `metadata_props` (trunk fingerprint, preprocessing, training settings, ...).
    pub metadata: BTreeMap<String, String>,
}

/// What an existing ONNX model holds, read by [`inspect`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSummary {
    /// ONNX IR version of the model.
    pub ir_version: i64,
    /// `(domain, version)`; the default domain is `""`.
    pub opsets: Vec<(String, i64)>,
    /// Names of the graph's inputs.
    pub graph_inputs: Vec<String>,
    /// Names of the graph's outputs.
    pub graph_outputs: Vec<String>,
    /// Every value name in the graph: inputs, outputs, node outputs, initializers.
    pub tensor_names: BTreeSet<String>,
    /// The `metadata_props` entries, in file order.
    pub metadata: Vec<(String, String)>,
    /// Some initializer keeps its data in an external file (`data_location = EXTERNAL`): the model
    /// only loads where that file sits at the recorded relative path.
    pub has_external_data: bool,
}

impl ModelSummary {
    /// Version of the default (`""` or `"ai.onnx"`) operator set, if imported.
    pub fn default_opset(&self) -> Option<i64> {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map(|&(_, v)| v)
    }
}

/// Errors from exporting a head or reading a trunk model.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A head with no layers.
    #[error("head has no layers")]
    EmptyHead,
    /// A layer whose weight or bias shape does not chain.
    #[error("head layer {layer}: {what}: expected {expected}, found {found}")]
    LayerShape {
        /// Layer index (0-based).
        layer: usize,
        /// Which tensor or dimension was checked.
        what: &'static str,
        /// What was expected.
        expected: usize,
        /// What was found.
        found: usize,
    },
    /// Class names and output width differ.
    #[error("head has {found} class names but its last layer has {expected} outputs")]
    ClassCount {
        /// What was expected.
        expected: usize,
        /// What was found.
        found: usize,
    },
    /// A scaler vector of the wrong length.
    #[error("feature scaler {what} has length {found}, expected the head input size {expected}")]
    ScalerShape {
        /// Which tensor or dimension was checked.
        what: &'static str,
        /// What was expected.
        expected: usize,
        /// What was found.
        found: usize,
    },
    /// A scaler std that is not finite and > 0.
    #[error("feature scaler std[{index}] = {value}: expected a finite value > 0")]
    BadStd {
        /// Index of the value.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A weight or bias that is NaN or infinite.
    #[error("head layer {layer} {what} holds a non-finite value at flat index {index}")]
    NonFinite {
        /// Layer index (0-based).
        layer: usize,
        /// Which tensor or dimension was checked.
        what: &'static str,
        /// Index of the value.
        index: usize,
    },
    /// A metadata key the exporter writes itself.
    #[error("metadata key {key:?} is written by the exporter; choose another key")]
    ReservedMetadata {
        /// The metadata key.
        key: String,
    },
    /// A metadata key the trunk already has with another value.
    #[error(
        "metadata key {key:?} is already in the trunk with value {existing:?}, head gives {new:?}"
    )]
    MetadataConflict {
        /// The metadata key.
        key: String,
        /// The trunk's value.
        existing: String,
        /// The head's value.
        new: String,
    },
    /// The trunk file is not a valid ModelProto.
    #[error("trunk ONNX is not a valid ModelProto: {what} at byte {offset} of a {message}")]
    Malformed {
        /// The protobuf message being read.
        message: &'static str,
        /// What is wrong.
        what: &'static str,
        /// Byte offset of the problem.
        offset: usize,
    },
    /// The trunk has no graph.
    #[error("trunk ONNX has no graph")]
    NoGraph,
    /// The trunk has no tensor of that name.
    #[error("trunk has no tensor named {name:?}; its graph outputs are {outputs:?}")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The trunk graph's outputs.
        outputs: Vec<String>,
    },
    /// A name the head would add already exists in the trunk.
    #[error("trunk already has a value named {name:?}; the head's names would clash")]
    NameClash {
        /// The tensor name.
        name: String,
    },
    /// The trunk IR version is too old.
    #[error("trunk IR version {found} is too old: expected >= {MIN_TRUNK_IR}")]
    OldIr {
        /// What was found.
        found: i64,
    },
    /// The trunk default-domain opset is missing or too old.
    #[error("trunk default-domain opset is {found:?}: expected a version >= {MIN_TRUNK_OPSET}")]
    Opset {
        /// What was found.
        found: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::build::fold_scaler;
    use super::*;
    use ndarray::array;

    fn small_head<'a>(w0: &'a Array2<f32>, b0: &'a Array1<f32>) -> HeadGraph<'a> {
        HeadGraph {
            layers: vec![(w0.view(), b0.view())],
            scaler: None,
            classes: vec!["a".into(), "b".into()],
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn fold_matches_explicit_scaling() {
        let w = array![[1.0f32, -2.0], [0.5, 3.0], [2.0, 0.0]];
        let b = array![0.1f32, -0.2];
        let mean = array![1.0f32, -1.0, 0.5];
        let std = array![2.0f32, 0.5, 4.0];
        let x = array![[3.0f32, 1.0, -2.0]];
        let explicit = ((&x - &mean) / &std).dot(&w) + &b;
        let (w2, b2) = fold_scaler(w.t(), b.view(), mean.view(), std.view());
        let folded = x.dot(&w2.t()) + &b2;
        for (a, c) in explicit.iter().zip(folded.iter()) {
            assert!((a - c).abs() < 1e-5, "{a} vs {c}");
        }
    }

    #[test]
    fn head_model_reads_back() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(2));
        let bytes = head_model_bytes(&small_head(&w, &b), "features").expect("valid head");
        let s = inspect(&bytes).expect("parses");
        assert_eq!(s.ir_version, IR_VERSION);
        assert_eq!(s.default_opset(), Some(OPSET));
        assert_eq!(s.graph_inputs, vec!["features"]);
        assert_eq!(s.graph_outputs, vec![OUTPUT_NAME]);
        assert!(s
            .metadata
            .contains(&("classes".into(), r#"["a","b"]"#.into())));
        assert!(!s.has_external_data);
    }

    #[test]
    fn head_errors() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(3));
        let e = head_model_bytes(&small_head(&w, &b), "x").expect_err("bias length");
        assert!(matches!(
            e,
            ExportError::LayerShape {
                what: "bias length",
                expected: 2,
                found: 3,
                ..
            }
        ));
        let b = Array1::<f32>::zeros(2);
        let mut h = small_head(&w, &b);
        h.classes.push("c".into());
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::ClassCount {
                expected: 2,
                found: 3
            })
        ));
        let (mean, std) = (Array1::<f32>::zeros(4), array![1.0f32, 0.0, 1.0, 1.0]);
        let mut h = small_head(&w, &b);
        h.scaler = Some((mean.view(), std.view()));
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::BadStd { index: 1, .. })
        ));
        let mut h = small_head(&w, &b);
        h.metadata.insert("classes".into(), "x".into());
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::ReservedMetadata { .. })
        ));
    }

    #[test]
    fn trunk_errors() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(2));
        let h = small_head(&w, &b);
        assert!(matches!(
            with_trunk_model_bytes(&[0x0b], "y", &h),
            Err(ExportError::Malformed { .. })
        ));
        assert!(matches!(
            with_trunk_model_bytes(&[0x08, 0x08], "y", &h),
            Err(ExportError::NoGraph)
        ));
        // A head model as "trunk": no tensor "nope", and its "probabilities" would clash.
        let trunk = head_model_bytes(&h, "features").expect("valid");
        match with_trunk_model_bytes(&trunk, "nope", &h) {
            Err(ExportError::MissingTensor { outputs, .. }) => {
                assert_eq!(outputs, vec![OUTPUT_NAME])
            }
            other => panic!("expected MissingTensor, got {other:?}"),
        }
        assert!(matches!(
            with_trunk_model_bytes(&trunk, "head/logits", &h),
            Err(ExportError::NameClash { .. })
        ));
    }
}
