//! The files an ONNX model loads besides itself: `location`s of tensors stored as external data.
//!
//! Reads only the protobuf fields on the way to a tensor (ModelProto.graph and .functions,
//! GraphProto.node / initializer / sparse_initializer, NodeProto.attribute, AttributeProto
//! t / g / tensors / graphs / sparse_tensor(s), SparseTensorProto values / indices) and collects
//! each TensorProto.external_data entry whose key is `location` (field numbers from onnx.proto3).

use std::collections::BTreeSet;

use crate::protobuf::{fields, DecodeError, Value};

/// Malformed protobuf: what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoError(pub &'static str);

impl From<DecodeError> for ProtoError {
    fn from(e: DecodeError) -> Self {
        ProtoError(e.what)
    }
}

#[derive(Clone, Copy)]
enum Msg {
    Model,
    Function,
    Graph,
    Node,
    Attribute,
    Sparse,
    Tensor,
}

fn walk(buf: &[u8], msg: Msg, out: &mut BTreeSet<String>) -> Result<(), ProtoError> {
    for (field, value) in fields(buf)? {
        let Value::Bytes(b) = value else { continue };
        let child = match (msg, field) {
            (Msg::Model, 7) => Msg::Graph,
            (Msg::Model, 25) => Msg::Function,
            (Msg::Function, 7) | (Msg::Graph, 1) => Msg::Node,
            (Msg::Graph, 5) | (Msg::Attribute, 5 | 10) | (Msg::Sparse, 1 | 2) => Msg::Tensor,
            (Msg::Graph, 15) | (Msg::Attribute, 22 | 23) => Msg::Sparse,
            (Msg::Node, 5) => Msg::Attribute,
            (Msg::Attribute, 6 | 11) => Msg::Graph,
            (Msg::Tensor, 13) => {
                let mut key = None;
                let mut val = None;
                for (f, v) in fields(b)? {
                    if let Value::Bytes(s) = v {
                        match f {
                            1 => key = Some(s),
                            2 => val = Some(s),
                            _ => {}
                        }
                    }
                }
                if key == Some(b"location".as_slice()) {
                    let loc = val.ok_or(ProtoError("external data location without a value"))?;
                    let loc = std::str::from_utf8(loc)
                        .map_err(|_| ProtoError("external data location is not UTF-8"))?;
                    out.insert(loc.to_string());
                }
                continue;
            }
            _ => continue,
        };
        walk(b, child, out)?;
    }
    Ok(())
}

/// Every external-data `location` an encoded ModelProto references, sorted, without repeats.
pub fn external_locations(model: &[u8]) -> Result<Vec<String>, ProtoError> {
    let mut out = BTreeSet::new();
    walk(model, Msg::Model, &mut out)?;
    Ok(out.into_iter().collect())
}
