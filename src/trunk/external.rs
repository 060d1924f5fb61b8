//! The files an ONNX model loads besides itself: `location`s of tensors stored as external data.
//!
//! Reads only the protobuf fields on the way to a tensor (ModelProto.graph and .functions,
//! GraphProto.node / initializer / sparse_initializer, NodeProto.attribute, AttributeProto
//! t / g / tensors / graphs / sparse_tensor(s), SparseTensorProto values / indices) and collects
//! each TensorProto.external_data entry whose key is `location` (field numbers from onnx.proto3).

use std::collections::BTreeSet;

/// Malformed protobuf: what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoError(pub &'static str);

enum Value<'b> {
    Varint,
    Bytes(&'b [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let &b = buf.get(*pos).ok_or(ProtoError("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(ProtoError("varint longer than 10 bytes"))
}

/// Top-level fields of one message: `(field number, value)`.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, ProtoError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let k = varint(buf, &mut pos)?;
        let v = match k & 7 {
            0 => {
                varint(buf, &mut pos)?;
                Value::Varint
            }
            1 | 5 => {
                pos += if k & 7 == 1 { 8 } else { 4 };
                if pos > buf.len() {
                    return Err(ProtoError("truncated fixed-width field"));
                }
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| ProtoError("length too large"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or(ProtoError("length-delimited field runs past the end"))?;
                let b = &buf[pos..end];
                pos = end;
                Value::Bytes(b)
            }
            _ => return Err(ProtoError("unsupported wire type")),
        };
        out.push((k >> 3, v));
    }
    Ok(out)
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
