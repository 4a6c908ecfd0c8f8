//! Subnormal weights of an ONNX model flushed to zero, in the model's bytes and in place.
//!
//! The BlazeFace models rust-faces downloads carry 3,160 subnormal float32 weights (magnitudes
//! below 1.2e-38), nearly all in the six depthwise convolutions of the box, score and landmark
//! heads. An Intel CPU computes with a subnormal operand through a microcode assist, dozens of
//! times slower than a normal multiply-add: measured on this project's Intel Xeon VM (ONNX
//! Runtime 1.32, one thread), those six convolutions took 35 of the 63 ms of a whole 640×480
//! frame, and 9.7 ms where the same convolution with normal weights takes 0.4. Flushing them to
//! zero changes no output (every output of the model bit-identical on the frames tried: a
//! subnormal weight times an activation is below float32's resolution of any sum it joins) and
//! makes the model 2.6–2.8× faster there on one thread (ONNX Runtime from Python); in `dgcn
//! bench` (two threads) a whole frame took 29 ms instead of 54, tracked crops 2.1 ms instead of
//! 3.5. ONNX Runtime's own `set_denormal_as_zero` sets only its pool's threads, not the thread
//! that calls it and computes with them.
//!
//! Only what is needed is read of the protobuf wire format: `ModelProto.graph` (field 7),
//! `GraphProto.initializer` (5), and of each `TensorProto` its `data_type` (2; FLOAT is 1),
//! `float_data` (4) and `raw_data` (9). Values are rewritten where they lie, so no length and
//! no other byte of the file changes. Weights kept outside the file (`data_location`) and
//! constants inside nodes are left as they are.
use std::ops::Range;

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_FLOAT_DATA: u64 = 4;
const TENSOR_RAW_DATA: u64 = 9;
const DATA_TYPE_FLOAT: u64 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a readable ONNX model: {what} at byte {at}")]
pub struct MalformedModel {
    what: &'static str,
    at: usize,
}

/// One field of a protobuf message: its number, wire type, and where its value lies (for a
/// length-delimited field the payload, for a fixed one its bytes); `value` holds a varint.
struct Field {
    number: u64,
    wire: u64,
    bytes: Range<usize>,
    value: u64,
}

/// Flushes every subnormal float32 weight of the model's initializers to a zero of the same
/// sign. Returns how many it changed.
pub fn flush_subnormal_weights(model: &mut [u8]) -> Result<usize, MalformedModel> {
    // Every value range is found before any is written, so a file that cannot be read is left
    // exactly as it was.
    let mut values = Vec::new();
    for graph in fields(model, 0..model.len())? {
        if graph.number != MODEL_GRAPH || graph.wire != WIRE_LEN {
            continue;
        }
        for tensor in fields(model, graph.bytes)? {
            if tensor.number != GRAPH_INITIALIZER || tensor.wire != WIRE_LEN {
                continue;
            }
            let parts = fields(model, tensor.bytes)?;
            let float = parts.iter().any(|f| {
                f.number == TENSOR_DATA_TYPE && f.wire == WIRE_VARINT && f.value == DATA_TYPE_FLOAT
            });
            if !float {
                continue;
            }
            values.extend(parts.into_iter().filter_map(|part| {
                matches!(
                    (part.number, part.wire),
                    (TENSOR_RAW_DATA, WIRE_LEN)
                        | (TENSOR_FLOAT_DATA, WIRE_LEN)
                        | (TENSOR_FLOAT_DATA, WIRE_FIXED32)
                )
                .then_some(part.bytes)
            }));
        }
    }
    Ok(values
        .into_iter()
        .map(|range| flush_f32s(&mut model[range]))
        .sum())
}

/// Little-endian float32 values, each subnormal one replaced by a zero of its sign.
fn flush_f32s(bytes: &mut [u8]) -> usize {
    let mut flushed = 0;
    for word in bytes.chunks_exact_mut(4) {
        let bits = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if f32::from_bits(bits).is_subnormal() {
            word.copy_from_slice(&(bits & 0x8000_0000).to_le_bytes());
            flushed += 1;
        }
    }
    flushed
}

/// The fields of the message that occupies `range` of `bytes`.
fn fields(bytes: &[u8], range: Range<usize>) -> Result<Vec<Field>, MalformedModel> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let (key, next) = varint(bytes, at, range.end)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            WIRE_VARINT => {
                let (value, end) = varint(bytes, next, range.end)?;
                Field {
                    number,
                    wire,
                    bytes: next..end,
                    value,
                }
            }
            WIRE_FIXED64 | WIRE_FIXED32 => {
                let len = if wire == WIRE_FIXED64 { 8 } else { 4 };
                let end = next + len;
                if end > range.end {
                    return Err(MalformedModel {
                        what: "a fixed-size value runs past its message",
                        at,
                    });
                }
                Field {
                    number,
                    wire,
                    bytes: next..end,
                    value: 0,
                }
            }
            WIRE_LEN => {
                let (len, start) = varint(bytes, next, range.end)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| start.checked_add(len))
                    .filter(|&end| end <= range.end)
                    .ok_or(MalformedModel {
                        what: "a length runs past its message",
                        at,
                    })?;
                Field {
                    number,
                    wire,
                    bytes: start..end,
                    value: 0,
                }
            }
            _ => {
                return Err(MalformedModel {
                    what: "an unknown wire type",
                    at,
                })
            }
        };
        if number == 0 {
            return Err(MalformedModel {
                what: "field number 0",
                at,
            });
        }
        at = field.bytes.end;
        out.push(field);
    }
    Ok(out)
}

/// A base-128 varint starting at `at`; returns it and the position after it.
fn varint(bytes: &[u8], mut at: usize, end: usize) -> Result<(u64, usize), MalformedModel> {
    let start = at;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let &byte = bytes.get(at).filter(|_| at < end).ok_or(MalformedModel {
            what: "a number runs past its message",
            at: start,
        })?;
        value |= u64::from(byte & 0x7f) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err(MalformedModel {
        what: "a number longer than 10 bytes",
        at: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn len_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = varint_bytes(number << 3 | WIRE_LEN);
        out.extend(varint_bytes(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = varint_bytes(number << 3 | WIRE_VARINT);
        out.extend(varint_bytes(value));
        out
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A model whose graph has a float tensor in `raw_data` (holding `a`, `b`), one in packed
    /// `float_data` (holding `c`), and an int32 tensor (data type 6) whose bytes, read as a
    /// float, would be subnormal.
    fn model(a: f32, b: f32, c: f32) -> Vec<u8> {
        let raw = [
            varint_field(1, 3),
            varint_field(2, 1),
            len_field(9, &floats(&[1.0, a, b])),
        ];
        let packed = [varint_field(2, 1), len_field(4, &floats(&[c, 0.5]))];
        let ints = [varint_field(2, 6), len_field(9, &[7, 0, 0, 0])];
        let mut graph = len_field(1, b"a node stays as it is");
        for tensor in [raw.concat(), packed.concat(), ints.concat()] {
            graph.extend(len_field(GRAPH_INITIALIZER, &tensor));
        }
        [varint_field(1, 7), len_field(MODEL_GRAPH, &graph)].concat()
    }

    #[test]
    fn subnormal_float_weights_become_zeros_of_their_sign_and_nothing_else_changes() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        let mut bytes = model(tiny, -tiny, tiny);
        assert_eq!(flush_subnormal_weights(&mut bytes), Ok(3));
        assert_eq!(bytes, model(0.0, -0.0, 0.0));
        assert_eq!(
            flush_subnormal_weights(&mut bytes),
            Ok(0),
            "a second pass finds none"
        );
        // The smallest normal float is kept.
        let mut normal = model(f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-30);
        let before = normal.clone();
        assert_eq!(flush_subnormal_weights(&mut normal), Ok(0));
        assert_eq!(normal, before);
    }

    #[test]
    fn a_truncated_or_foreign_file_is_an_error_and_left_unchanged() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        let whole = model(tiny, tiny, tiny);
        for cut in [1, 3, 9, whole.len() / 2] {
            let mut bytes = whole[..whole.len() - cut].to_vec();
            let before = bytes.clone();
            assert!(flush_subnormal_weights(&mut bytes).is_err(), "cut {cut}");
            assert_eq!(bytes, before, "cut {cut}");
        }
        let mut text = b"<html>not a model</html>".to_vec();
        assert!(flush_subnormal_weights(&mut text).is_err());
    }
}
