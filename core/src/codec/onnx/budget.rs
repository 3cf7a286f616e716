//! What decoding a model would allocate, read off the wire format before prost builds anything.
//! A protobuf field can cost far more decoded than encoded: an empty `NodeProto` is 2 bytes on
//! the wire and a few hundred in memory, a one-byte varint of a packed `int64` list is 8. So a
//! file within MAX_MODEL_BYTES could still ask for tens of gigabytes; this pass adds up an upper
//! bound of the decoded size (struct sizes from prost's own types, payloads, varints widened to
//! 8 bytes) without allocating, and the import refuses a model whose bound is too large.

use core::mem::size_of;

use super::proto::{
    tensor_proto, tensor_shape_proto, type_proto, AttributeProto, DeviceConfigurationProto, FunctionProto, GraphProto,
    IntIntListEntryProto, ModelProto, NodeDeviceConfigurationProto, NodeProto, OperatorSetIdProto, ShardedDimProto,
    ShardingSpecProto, SimpleShardedDimProto, SparseTensorProto, StringStringEntryProto, TensorAnnotation, TensorProto,
    TensorShapeProto, TrainingInfoProto, TypeProto, ValueInfoProto,
};

/// The message types of onnx.proto, to know which fields are nested messages.
#[derive(Clone, Copy)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Segment,
    SparseTensor,
    ValueInfo,
    Type,
    TypeTensor,
    TypeSequence,
    TypeMap,
    TypeOptional,
    TypeSparse,
    TypeOpaque,
    Shape,
    Dimension,
    StringString,
    OperatorSetId,
    TrainingInfo,
    Function,
    TensorAnnotation,
    DeviceConfiguration,
    NodeDeviceConfiguration,
    ShardingSpec,
    ShardedDim,
    SimpleShardedDim,
    IntIntList,
}

/// What a length-delimited field holds.
enum Field {
    Message(Kind),
    /// A packed list of varints: each byte may become an 8-byte element.
    PackedVarints,
    /// A string, bytes or a packed list of fixed-width numbers: as long decoded as encoded.
    Bytes,
}

impl Kind {
    /// The decoded struct's size (each message lives in a Vec slot or a Box of this size).
    fn size(self) -> usize {
        match self {
            Kind::Model => size_of::<ModelProto>(),
            Kind::Graph => size_of::<GraphProto>(),
            Kind::Node => size_of::<NodeProto>(),
            Kind::Attribute => size_of::<AttributeProto>(),
            Kind::Tensor => size_of::<TensorProto>(),
            Kind::Segment => size_of::<tensor_proto::Segment>(),
            Kind::SparseTensor => size_of::<SparseTensorProto>(),
            Kind::ValueInfo => size_of::<ValueInfoProto>(),
            Kind::Type => size_of::<TypeProto>(),
            Kind::TypeTensor => size_of::<type_proto::Tensor>(),
            Kind::TypeSequence => size_of::<type_proto::Sequence>(),
            Kind::TypeMap => size_of::<type_proto::Map>(),
            Kind::TypeOptional => size_of::<type_proto::Optional>(),
            Kind::TypeSparse => size_of::<type_proto::SparseTensor>(),
            Kind::TypeOpaque => size_of::<type_proto::Opaque>(),
            Kind::Shape => size_of::<TensorShapeProto>(),
            Kind::Dimension => size_of::<tensor_shape_proto::Dimension>(),
            Kind::StringString => size_of::<StringStringEntryProto>(),
            Kind::OperatorSetId => size_of::<OperatorSetIdProto>(),
            Kind::TrainingInfo => size_of::<TrainingInfoProto>(),
            Kind::Function => size_of::<FunctionProto>(),
            Kind::TensorAnnotation => size_of::<TensorAnnotation>(),
            Kind::DeviceConfiguration => size_of::<DeviceConfigurationProto>(),
            Kind::NodeDeviceConfiguration => size_of::<NodeDeviceConfigurationProto>(),
            Kind::ShardingSpec => size_of::<ShardingSpecProto>(),
            Kind::ShardedDim => size_of::<ShardedDimProto>(),
            Kind::SimpleShardedDim => size_of::<SimpleShardedDimProto>(),
            Kind::IntIntList => size_of::<IntIntListEntryProto>(),
        }
    }

    /// The field with this tag, as onnx.proto (proto/onnx.rs) declares it.
    fn field(self, tag: u32) -> Field {
        use Field::{Message as M, PackedVarints as V};
        match (self, tag) {
            (Kind::Model, 7) => M(Kind::Graph),
            (Kind::Model, 8) => M(Kind::OperatorSetId),
            (Kind::Model, 14) => M(Kind::StringString),
            (Kind::Model, 20) => M(Kind::TrainingInfo),
            (Kind::Model, 25) => M(Kind::Function),
            (Kind::Model, 26) => M(Kind::DeviceConfiguration),
            (Kind::Graph, 1) => M(Kind::Node),
            (Kind::Graph, 5) => M(Kind::Tensor),
            (Kind::Graph, 15) => M(Kind::SparseTensor),
            (Kind::Graph, 11..=13) => M(Kind::ValueInfo),
            (Kind::Graph, 14) => M(Kind::TensorAnnotation),
            (Kind::Graph, 16) => M(Kind::StringString),
            (Kind::Node, 5) => M(Kind::Attribute),
            (Kind::Node, 9) => M(Kind::StringString),
            (Kind::Node, 10) => M(Kind::NodeDeviceConfiguration),
            (Kind::Attribute, 5 | 10) => M(Kind::Tensor),
            (Kind::Attribute, 6 | 11) => M(Kind::Graph),
            (Kind::Attribute, 22 | 23) => M(Kind::SparseTensor),
            (Kind::Attribute, 14 | 15) => M(Kind::Type),
            (Kind::Attribute, 8) => V,
            (Kind::Tensor, 1 | 5 | 7 | 11) => V,
            (Kind::Tensor, 3) => M(Kind::Segment),
            (Kind::Tensor, 13 | 16) => M(Kind::StringString),
            (Kind::SparseTensor, 1 | 2) => M(Kind::Tensor),
            (Kind::SparseTensor, 3) => V,
            (Kind::ValueInfo, 2) => M(Kind::Type),
            (Kind::ValueInfo, 4) => M(Kind::StringString),
            (Kind::Type, 1) => M(Kind::TypeTensor),
            (Kind::Type, 4) => M(Kind::TypeSequence),
            (Kind::Type, 5) => M(Kind::TypeMap),
            (Kind::Type, 9) => M(Kind::TypeOptional),
            (Kind::Type, 8) => M(Kind::TypeSparse),
            (Kind::Type, 7) => M(Kind::TypeOpaque),
            (Kind::TypeTensor | Kind::TypeSparse, 2) => M(Kind::Shape),
            (Kind::TypeSequence | Kind::TypeOptional, 1) => M(Kind::Type),
            (Kind::TypeMap, 2) => M(Kind::Type),
            (Kind::Shape, 1) => M(Kind::Dimension),
            (Kind::TrainingInfo, 1 | 2) => M(Kind::Graph),
            (Kind::TrainingInfo, 3 | 4) => M(Kind::StringString),
            (Kind::Function, 11) => M(Kind::Attribute),
            (Kind::Function, 7) => M(Kind::Node),
            (Kind::Function, 9) => M(Kind::OperatorSetId),
            (Kind::Function, 12) => M(Kind::ValueInfo),
            (Kind::Function, 14) => M(Kind::StringString),
            (Kind::TensorAnnotation, 2) => M(Kind::StringString),
            (Kind::NodeDeviceConfiguration, 2) => M(Kind::ShardingSpec),
            (Kind::ShardingSpec, 2) => V,
            (Kind::ShardingSpec, 3) => M(Kind::IntIntList),
            (Kind::ShardingSpec, 4) => M(Kind::ShardedDim),
            (Kind::ShardedDim, 2) => M(Kind::SimpleShardedDim),
            (Kind::IntIntList, 2) => V,
            _ => Field::Bytes,
        }
    }
}

/// prost's own nesting limit: deeper input is refused by the decoder anyway.
const MAX_DEPTH: u32 = 100;
/// What a String/Vec header costs, for each string or bytes field.
const HEADER: u64 = 3 * size_of::<usize>() as u64;

/// Why the wire format could not be walked: prost would refuse it too, with its own message.
pub struct Unreadable;

/// An upper bound of the bytes that decoding `bytes` as a ModelProto allocates, or Unreadable
/// where the bytes are not a valid protobuf message (left for prost to describe).
pub fn decoded_size(bytes: &[u8]) -> Result<u64, Unreadable> {
    Ok(Kind::Model.size() as u64 + message(bytes, Kind::Model, 0)?)
}

fn message(mut bytes: &[u8], kind: Kind, depth: u32) -> Result<u64, Unreadable> {
    if depth > MAX_DEPTH {
        return Err(Unreadable);
    }
    let mut cost = 0u64;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (tag, wire) = (key >> 3, key & 7);
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(Unreadable);
        }
        cost += match wire {
            0 => varint(&mut bytes).map(|_| 8)?,
            1 => skip(&mut bytes, 8).map(|_| 8)?,
            5 => skip(&mut bytes, 4).map(|_| 4)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).map_err(|_| Unreadable)?;
                let payload = bytes.get(..len).ok_or(Unreadable)?;
                bytes = &bytes[len..];
                match kind.field(tag as u32) {
                    Field::Message(inner) => inner.size() as u64 + message(payload, inner, depth + 1)?,
                    Field::PackedVarints => HEADER + 8 * len as u64,
                    Field::Bytes => HEADER + len as u64,
                }
            }
            // Groups (3, 4) do not occur in proto3-era ONNX and prost refuses them here.
            _ => return Err(Unreadable),
        };
    }
    Ok(cost)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, Unreadable> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = bytes.split_first().ok_or(Unreadable)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Unreadable)
}

fn skip(bytes: &mut &[u8], n: usize) -> Result<(), Unreadable> {
    *bytes = bytes.get(n..).ok_or(Unreadable)?;
    Ok(())
}
