//! Reads back the top-level facts of a serialized ONNX model ([`inspect`]).

use super::fields::f;
use super::proto::{self, Value};
use super::*;

pub(super) fn malformed(message: &'static str) -> impl Fn(proto::DecodeError) -> ExportError {
    move |e| ExportError::Malformed {
        message,
        what: e.what,
        offset: e.offset,
    }
}

pub(super) fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads the top-level facts of a serialized `ModelProto` (see [`ModelSummary`]); fields repeated
/// by concatenation merge as protobuf does (the last scalar wins, repeated fields append).
pub fn inspect(onnx: &[u8]) -> Result<ModelSummary, ExportError> {
    let mut s = ModelSummary::default();
    let mut saw_graph = false;
    for (number, value) in proto::fields(onnx).map_err(malformed("ModelProto"))? {
        match (number, value) {
            (f::MODEL_IR_VERSION, Value::Varint(v)) => s.ir_version = v as i64,
            (f::MODEL_OPSET_IMPORT, Value::Bytes(b)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for (n, v) in proto::fields(b).map_err(malformed("OperatorSetIdProto"))? {
                    match (n, v) {
                        (f::OPSET_DOMAIN, Value::Bytes(d)) => domain = utf8(d),
                        (f::OPSET_VERSION, Value::Varint(v)) => version = v as i64,
                        _ => {}
                    }
                }
                s.opsets.push((domain, version));
            }
            (f::MODEL_METADATA, Value::Bytes(b)) => {
                let (k, v) = string_entry(b)?;
                s.metadata.push((k, v));
            }
            (f::MODEL_GRAPH, Value::Bytes(b)) => {
                saw_graph = true;
                read_graph(b, &mut s)?;
            }
            _ => {}
        }
    }
    if !saw_graph {
        return Err(ExportError::NoGraph);
    }
    Ok(s)
}

pub(super) fn string_entry(b: &[u8]) -> Result<(String, String), ExportError> {
    let (mut k, mut v) = (String::new(), String::new());
    for (n, val) in proto::fields(b).map_err(malformed("StringStringEntryProto"))? {
        match (n, val) {
            (f::ENTRY_KEY, Value::Bytes(x)) => k = utf8(x),
            (f::ENTRY_VALUE, Value::Bytes(x)) => v = utf8(x),
            _ => {}
        }
    }
    Ok((k, v))
}

/// The `name` (field 1 for ValueInfoProto) of an embedded message, if any.
pub(super) fn name_field(
    b: &[u8],
    number: u32,
    message: &'static str,
) -> Result<Option<String>, ExportError> {
    Ok(proto::fields(b)
        .map_err(malformed(message))?
        .into_iter()
        .rev()
        .find_map(|(n, v)| match (n, v) {
            (n, Value::Bytes(x)) if n == number => Some(utf8(x)),
            _ => None,
        }))
}

pub(super) fn read_graph(b: &[u8], s: &mut ModelSummary) -> Result<(), ExportError> {
    for (number, value) in proto::fields(b).map_err(malformed("GraphProto"))? {
        let Value::Bytes(m) = value else { continue };
        match number {
            f::GRAPH_NODE => {
                for (n, v) in proto::fields(m).map_err(malformed("NodeProto"))? {
                    if let (f::NODE_OUTPUT, Value::Bytes(o)) = (n, v) {
                        s.tensor_names.insert(utf8(o));
                    }
                }
            }
            f::GRAPH_INITIALIZER => {
                for (n, v) in proto::fields(m).map_err(malformed("TensorProto"))? {
                    match (n, v) {
                        (f::TENSOR_NAME, Value::Bytes(x)) => {
                            s.tensor_names.insert(utf8(x));
                        }
                        (f::TENSOR_DATA_LOCATION, Value::Varint(1)) => s.has_external_data = true,
                        _ => {}
                    }
                }
            }
            f::GRAPH_INPUT | f::GRAPH_OUTPUT | f::GRAPH_VALUE_INFO => {
                if let Some(name) = name_field(m, f::VALUE_INFO_NAME, "ValueInfoProto")? {
                    s.tensor_names.insert(name.clone());
                    match number {
                        f::GRAPH_INPUT => s.graph_inputs.push(name),
                        f::GRAPH_OUTPUT => s.graph_outputs.push(name),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
