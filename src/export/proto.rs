//! Minimal protobuf wire format: a field tree encoded in one pass into an exact-size buffer; the
//! field reader for inspecting existing messages is [`crate::protobuf`], shared with the trunk.
//!
//! Only what ONNX needs: varints (wire type 0), length-delimited bytes and sub-messages (type 2);
//! fixed32/fixed64 (types 5/1) are skipped when reading. Float tensors are written as `raw_data`
//! bytes, element by element in little-endian order, straight from the array views, so a 400 MB
//! weight matrix is copied once, into the output.

use std::borrow::Cow;

use ndarray::{ArrayView1, ArrayView2, CowArray, IxDyn};

/// One field of a message to encode.
pub(crate) enum Field<'a> {
    /// Wire type 0: `int64`/`int32`/enum/bool (negative values as 10-byte two's complement).
    Varint(u32, i64),
    /// Wire type 2: `string` or `bytes`.
    Bytes(u32, Cow<'a, [u8]>),
    /// Wire type 2: `f32` values, little-endian, in logical (row-major) order.
    Floats(u32, CowArray<'a, f32, IxDyn>),
    /// Wire type 2: an embedded message.
    Msg(u32, Vec<Field<'a>>),
}

impl<'a> Field<'a> {
    pub(crate) fn str(field: u32, s: impl Into<String>) -> Self {
        Field::Bytes(field, Cow::Owned(s.into().into_bytes()))
    }

    pub(crate) fn floats_2d(field: u32, a: ArrayView2<'a, f32>) -> Self {
        Field::Floats(field, CowArray::from(a.into_dyn()))
    }

    pub(crate) fn floats_1d(field: u32, a: ArrayView1<'a, f32>) -> Self {
        Field::Floats(field, CowArray::from(a.into_dyn()))
    }

    pub(crate) fn floats_owned(field: u32, a: ndarray::ArrayD<f32>) -> Self {
        Field::Floats(field, CowArray::from(a))
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire)
}

/// Payload length of a length-delimited field (without key and length prefix).
fn payload_len(f: &Field) -> usize {
    match f {
        Field::Varint(..) => 0,
        Field::Bytes(_, b) => b.len(),
        Field::Floats(_, a) => 4 * a.len(),
        Field::Msg(_, children) => message_len(children),
    }
}

/// Encoded size of one field including its key.
fn field_len(f: &Field) -> usize {
    match f {
        Field::Varint(n, v) => varint_len(key(*n, 0)) + varint_len(*v as u64),
        Field::Bytes(n, _) | Field::Floats(n, _) | Field::Msg(n, _) => {
            let p = payload_len(f);
            varint_len(key(*n, 2)) + varint_len(p as u64) + p
        }
    }
}

/// Encoded size of a message made of `fields`.
pub(crate) fn message_len(fields: &[Field]) -> usize {
    fields.iter().map(field_len).sum()
}

fn put_field(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Varint(n, v) => {
            put_varint(out, key(*n, 0));
            put_varint(out, *v as u64);
        }
        Field::Bytes(n, b) => {
            put_varint(out, key(*n, 2));
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Field::Floats(n, a) => {
            put_varint(out, key(*n, 2));
            put_varint(out, 4 * a.len() as u64);
            for v in a.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Field::Msg(n, children) => {
            put_varint(out, key(*n, 2));
            put_varint(out, message_len(children) as u64);
            for c in children {
                put_field(out, c);
            }
        }
    }
}

/// Encodes a message into a buffer of exactly [`message_len`] bytes.
pub(crate) fn encode(fields: &[Field]) -> Vec<u8> {
    let len = message_len(fields);
    let mut out = Vec::with_capacity(len);
    for f in fields {
        put_field(&mut out, f);
    }
    debug_assert_eq!(out.len(), len, "protobuf size pass and write pass disagree");
    out
}

pub(crate) use crate::protobuf::{fields, DecodeError, Value};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_spec() {
        // Examples from the protobuf encoding guide: 150 → 96 01; field 1 varint 150 → 08 96 01.
        assert_eq!(encode(&[Field::Varint(1, 150)]), vec![0x08, 0x96, 0x01]);
        // Negative int64 → 10 bytes.
        let neg = encode(&[Field::Varint(1, -1)]);
        assert_eq!(neg.len(), 11);
        assert_eq!(
            fields(&neg).expect("valid")[0],
            (1, Value::Varint(u64::MAX))
        );
        // Field 2 string "testing" → 12 07 74 65 73 74 69 6e 67.
        assert_eq!(
            encode(&[Field::str(2, "testing")]),
            vec![0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]
        );
    }

    #[test]
    fn nested_round_trip_and_floats() {
        let w = ndarray::array![[1.0f32, 2.0], [3.0, 4.0]];
        let msg = vec![
            Field::Varint(1, 7),
            Field::Msg(3, vec![Field::str(1, "a"), Field::floats_2d(9, w.t())]),
        ];
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), message_len(&msg));
        let top = fields(&bytes).expect("valid");
        assert_eq!(top[0], (1, Value::Varint(7)));
        let Value::Bytes(inner) = top[1].1 else {
            panic!("expected bytes")
        };
        let inner = fields(inner).expect("valid");
        let Value::Bytes(raw) = inner[1].1 else {
            panic!("expected bytes")
        };
        let vals: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(
            vals,
            vec![1.0, 3.0, 2.0, 4.0],
            "transposed view written in logical order"
        );
    }
}
