//! ONNX messages as protobuf fields: the field numbers of `onnx/onnx.proto` and builders for
//! value infos, nodes, attributes, initializers and metadata entries.

use super::proto::Field;

// Field numbers, onnx.proto.
pub(super) mod f {
    pub const MODEL_IR_VERSION: u32 = 1;
    pub const MODEL_PRODUCER_NAME: u32 = 2;
    pub const MODEL_PRODUCER_VERSION: u32 = 3;
    pub const MODEL_DOC: u32 = 6;
    pub const MODEL_GRAPH: u32 = 7;
    pub const MODEL_OPSET_IMPORT: u32 = 8;
    pub const MODEL_METADATA: u32 = 14;
    pub const OPSET_DOMAIN: u32 = 1;
    pub const OPSET_VERSION: u32 = 2;
    pub const ENTRY_KEY: u32 = 1;
    pub const ENTRY_VALUE: u32 = 2;
    pub const GRAPH_NODE: u32 = 1;
    pub const GRAPH_NAME: u32 = 2;
    pub const GRAPH_INITIALIZER: u32 = 5;
    pub const GRAPH_DOC: u32 = 10;
    pub const GRAPH_INPUT: u32 = 11;
    pub const GRAPH_OUTPUT: u32 = 12;
    pub const GRAPH_VALUE_INFO: u32 = 13;
    pub const NODE_INPUT: u32 = 1;
    pub const NODE_OUTPUT: u32 = 2;
    pub const NODE_NAME: u32 = 3;
    pub const NODE_OP_TYPE: u32 = 4;
    pub const NODE_ATTRIBUTE: u32 = 5;
    pub const ATTR_NAME: u32 = 1;
    pub const ATTR_I: u32 = 3;
    pub const ATTR_TYPE: u32 = 20;
    pub const ATTR_TYPE_INT: i64 = 2;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const TENSOR_DATA_LOCATION: u32 = 14;
    pub const TENSOR_FLOAT: i64 = 1;
    pub const VALUE_INFO_NAME: u32 = 1;
    pub const VALUE_INFO_TYPE: u32 = 2;
    pub const TYPE_TENSOR: u32 = 1;
    pub const TYPE_TENSOR_ELEM_TYPE: u32 = 1;
    pub const TYPE_TENSOR_SHAPE: u32 = 2;
    pub const SHAPE_DIM: u32 = 1;
    pub const DIM_VALUE: u32 = 1;
    pub const DIM_PARAM: u32 = 2;
}

/// A tensor dimension in a `ValueInfoProto`.
pub(super) enum Dim {
    Value(usize),
    Param(&'static str),
    Unknown,
}

pub(super) fn value_info<'a>(name: &str, dims: &[Dim]) -> Vec<Field<'a>> {
    let dims = dims
        .iter()
        .map(|d| {
            Field::Msg(
                f::SHAPE_DIM,
                match d {
                    Dim::Value(v) => vec![Field::Varint(f::DIM_VALUE, *v as i64)],
                    Dim::Param(p) => vec![Field::str(f::DIM_PARAM, *p)],
                    Dim::Unknown => vec![],
                },
            )
        })
        .collect();
    vec![
        Field::str(f::VALUE_INFO_NAME, name),
        Field::Msg(
            f::VALUE_INFO_TYPE,
            vec![Field::Msg(
                f::TYPE_TENSOR,
                vec![
                    Field::Varint(f::TYPE_TENSOR_ELEM_TYPE, f::TENSOR_FLOAT),
                    Field::Msg(f::TYPE_TENSOR_SHAPE, dims),
                ],
            )],
        ),
    ]
}

pub(super) fn node<'a>(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<Field<'a>>,
) -> Field<'a> {
    let mut fields: Vec<Field> = inputs
        .iter()
        .map(|i| Field::str(f::NODE_INPUT, *i))
        .collect();
    fields.extend(outputs.iter().map(|o| Field::str(f::NODE_OUTPUT, *o)));
    fields.push(Field::str(f::NODE_NAME, name));
    fields.push(Field::str(f::NODE_OP_TYPE, op));
    fields.extend(attrs);
    Field::Msg(f::GRAPH_NODE, fields)
}

pub(super) fn int_attr<'a>(name: &str, v: i64) -> Field<'a> {
    Field::Msg(
        f::NODE_ATTRIBUTE,
        vec![
            Field::str(f::ATTR_NAME, name),
            Field::Varint(f::ATTR_I, v),
            Field::Varint(f::ATTR_TYPE, f::ATTR_TYPE_INT),
        ],
    )
}

pub(super) fn initializer<'a>(name: &str, dims: &[usize], data: Field<'a>) -> Field<'a> {
    let mut fields: Vec<Field> = dims
        .iter()
        .map(|&d| Field::Varint(f::TENSOR_DIMS, d as i64))
        .collect();
    fields.push(Field::Varint(f::TENSOR_DATA_TYPE, f::TENSOR_FLOAT));
    fields.push(Field::str(f::TENSOR_NAME, name));
    fields.push(data);
    Field::Msg(f::GRAPH_INITIALIZER, fields)
}

pub(super) fn entry<'a>(key: &str, value: &str) -> Field<'a> {
    Field::Msg(
        f::MODEL_METADATA,
        vec![
            Field::str(f::ENTRY_KEY, key),
            Field::str(f::ENTRY_VALUE, value),
        ],
    )
}
