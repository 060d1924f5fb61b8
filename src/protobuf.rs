//! Protobuf wire-format reader: the top-level fields of an encoded message, for inspecting ONNX
//! files (`export` reads a model's summary, `trunk` its external-data locations). Varints (wire
//! type 0) and length-delimited fields (type 2) are returned; fixed32/fixed64 (types 5/1) are
//! skipped; groups are an error.

/// A field read from an encoded message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'b> {
    Varint(u64),
    Bytes(&'b [u8]),
    /// fixed32 / fixed64: skipped content.
    Fixed,
}

/// Malformed protobuf input: what was wrong, at which byte offset of the message being read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub what: &'static str,
    pub offset: usize,
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(DecodeError {
                what: "truncated varint",
                offset: *pos,
            });
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError {
        what: "varint longer than 10 bytes",
        offset: *pos,
    })
}

/// Reads all top-level fields of an encoded message, in order: `(field number, value)`.
pub fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, DecodeError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let start = pos;
        let k = get_varint(buf, &mut pos)?;
        let number = u32::try_from(k >> 3).map_err(|_| DecodeError {
            what: "field number too large",
            offset: start,
        })?;
        let value = match k & 7 {
            0 => Value::Varint(get_varint(buf, &mut pos)?),
            1 | 5 => {
                let n = if k & 7 == 1 { 8 } else { 4 };
                if pos + n > buf.len() {
                    return Err(DecodeError {
                        what: "truncated fixed-width field",
                        offset: pos,
                    });
                }
                pos += n;
                Value::Fixed
            }
            2 => {
                let len = get_varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or(DecodeError {
                        what: "length-delimited field runs past the end",
                        offset: pos,
                    })?;
                let b = &buf[pos..end];
                pos = end;
                Value::Bytes(b)
            }
            _ => {
                return Err(DecodeError {
                    what: "unsupported wire type (group)",
                    offset: start,
                })
            }
        };
        out.push((number, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_an_error() {
        assert!(fields(&[0x08]).is_err());
        assert!(fields(&[0x12, 0x05, 0x01]).is_err());
        assert!(fields(&[0x0b]).is_err(), "group start");
    }
}
