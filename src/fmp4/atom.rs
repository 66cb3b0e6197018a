//! The one shape every box has: decode, encode, its encoded length computed (never stored),
//! and a one-line description for `probe`.
//!
//! Boxes this code does not model are kept as [`RawBox`]es, byte for byte, so decoding and
//! encoding a box tree gives back the input.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::{BoxHeader, Error, ErrorKind, FourCC, Reader, Result};

/// A box type: decoded from its body, encoded back to it.
pub trait Atom: Sized {
    const KIND: FourCC;

    /// Reads the body (everything after the header). The caller checks that the body was used
    /// exactly.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self>;

    /// Writes the body; exactly [`Atom::body_len`] bytes.
    fn encode_body<B: BufMut>(&self, out: &mut B);

    /// The length of the body, computed from the fields.
    fn body_len(&self) -> usize;

    /// The fields worth seeing in a dump, on one line (`probe`).
    fn describe(&self, _out: &mut String) {}

    /// Calls `visit` on each child box, in order (containers only).
    fn visit_children(&self, _visit: &mut dyn FnMut(&dyn Dump)) {}

    /// The whole box: header and body.
    fn encoded_len(&self) -> usize {
        let body = self.body_len();
        BoxHeader::encoded_len(body) + body
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        let body = self.body_len();
        if BoxHeader::encoded_len(body) == 16 {
            out.put_u32(1);
            out.put_slice(Self::KIND.as_bytes());
            out.put_u64(body as u64 + 16);
        } else {
            // `encoded_len` chose 8 bytes because the size fits in 32 bits.
            out.put_u32((body + 8) as u32);
            out.put_slice(Self::KIND.as_bytes());
        }
        self.encode_body(out);
    }

    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes a buffer that holds exactly one box of this type.
    fn decode(data: &Bytes) -> Result<Self> {
        Self::decode_at(data, 0)
    }

    /// Like [`Atom::decode`], with `base` as the absolute offset of the buffer in its stream.
    fn decode_at(data: &Bytes, base: u64) -> Result<Self> {
        let mut r = Reader::new(data, base);
        let child = r
            .next_box()?
            .ok_or_else(|| r.error(ErrorKind::MissingBox(Self::KIND)))?;
        let atom = child.decode::<Self>()?;
        r.expect_end()?;
        Ok(atom)
    }
}

/// What `probe` needs from any box, known or not.
pub trait Dump {
    fn kind(&self) -> FourCC;
    fn size(&self) -> u64;
    fn describe(&self, out: &mut String);
    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump));
}

impl<T: Atom> Dump for T {
    fn kind(&self) -> FourCC {
        T::KIND
    }

    fn size(&self) -> u64 {
        self.encoded_len() as u64
    }

    fn describe(&self, out: &mut String) {
        Atom::describe(self, out)
    }

    fn visit_children(&self, visit: &mut dyn FnMut(&dyn Dump)) {
        Atom::visit_children(self, visit)
    }
}

/// A box kept verbatim, header included: boxes this code does not model, and top-level boxes
/// passed through as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBox {
    pub kind: FourCC,
    pub bytes: Bytes,
}

impl RawBox {
    pub fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.bytes);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Dump for RawBox {
    fn kind(&self) -> FourCC {
        self.kind
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn describe(&self, _out: &mut String) {}

    fn visit_children(&self, _visit: &mut dyn FnMut(&dyn Dump)) {}
}

/// A box of a known type whose body is kept verbatim, so that it keeps its place among its
/// siblings when a container is encoded again (`edts`, `dinf`, `vmhd`…).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opaque<const KIND: u32> {
    pub body: Bytes,
}

impl<const KIND: u32> Atom for Opaque<KIND> {
    const KIND: FourCC = FourCC::from_u32(KIND);

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self { body: r.rest() })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.body);
    }

    fn body_len(&self) -> usize {
        self.body.len()
    }
}

/// Writes a full box's version and 24-bit flags.
pub fn put_full_header<B: BufMut>(out: &mut B, version: u8, flags: u32) {
    out.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
}

/// Appends ` name=value` to a description.
pub fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, " {name}={value}");
}

/// An error for a field value that breaks the format's rules.
pub fn invalid(r: &Reader<'_>, why: &'static str) -> Error {
    r.error(ErrorKind::InvalidValue(why))
}

/// Declares a container box: its required, optional and repeated children, in the order they
/// are written. Children of other types are kept verbatim in `unknown` and written after the
/// declared ones.
macro_rules! container {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $kind:literal {
            $( $(#[$fmeta:meta])* $how:ident $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: container!(@type $how $ty), )*
            /// Children this code does not model, kept verbatim in their order.
            pub unknown: Vec<$crate::fmp4::RawBox>,
        }

        impl $crate::fmp4::Atom for $name {
            const KIND: $crate::fmp4::FourCC = $crate::fmp4::FourCC::new($kind);

            fn decode_body(r: &mut $crate::fmp4::Reader<'_>) -> $crate::fmp4::Result<Self> {
                $( let mut $field: container!(@temp $how $ty) = Default::default(); )*
                let mut unknown = Vec::new();
                while let Some(child) = r.next_box()? {
                    let kind = child.kind();
                    $(
                        if kind == <$ty as $crate::fmp4::Atom>::KIND {
                            container!(@put $how $field child);
                            continue;
                        }
                    )*
                    unknown.push(child.raw());
                }
                Ok(Self {
                    $( $field: container!(@finish $how $field ($ty) r), )*
                    unknown,
                })
            }

            fn encode_body<B: bytes::BufMut>(&self, out: &mut B) {
                $( container!(@encode $how self.$field out); )*
                for raw in &self.unknown {
                    raw.encode(out);
                }
            }

            fn body_len(&self) -> usize {
                0 $( + container!(@len $how self.$field) )*
                    + self.unknown.iter().map(|raw| raw.len()).sum::<usize>()
            }

            fn visit_children(&self, visit: &mut dyn FnMut(&dyn $crate::fmp4::Dump)) {
                $( container!(@visit $how self.$field visit); )*
                for raw in &self.unknown {
                    visit(raw);
                }
            }
        }
    };

    (@type required $ty:ty) => { $ty };
    (@type optional $ty:ty) => { Option<$ty> };
    (@type repeated $ty:ty) => { Vec<$ty> };

    (@temp required $ty:ty) => { Option<$ty> };
    (@temp optional $ty:ty) => { Option<$ty> };
    (@temp repeated $ty:ty) => { Vec<$ty> };

    (@put repeated $field:ident $child:ident) => {
        $field.push($child.decode()?);
    };
    (@put $how:ident $field:ident $child:ident) => {
        if $field.is_some() {
            return Err($crate::fmp4::Error::new(
                $crate::fmp4::ErrorKind::DuplicateBox($child.kind()),
                $child.offset(),
                $child.path(),
            ));
        }
        $field = Some($child.decode()?);
    };

    (@finish required $field:ident ($ty:ty) $r:ident) => {
        $field.ok_or_else(|| $r.error($crate::fmp4::ErrorKind::MissingBox(
            <$ty as $crate::fmp4::Atom>::KIND,
        )))?
    };
    (@finish $how:ident $field:ident ($ty:ty) $r:ident) => { $field };

    (@encode required $($value:tt).+ $out:ident) => { $crate::fmp4::Atom::encode(&$($value).+, $out) };
    (@encode optional $($value:tt).+ $out:ident) => {
        if let Some(child) = &$($value).+ { $crate::fmp4::Atom::encode(child, $out) }
    };
    (@encode repeated $($value:tt).+ $out:ident) => {
        for child in &$($value).+ { $crate::fmp4::Atom::encode(child, $out) }
    };

    (@len required $($value:tt).+) => { $crate::fmp4::Atom::encoded_len(&$($value).+) };
    (@len optional $($value:tt).+) => {
        $($value).+.as_ref().map_or(0, $crate::fmp4::Atom::encoded_len)
    };
    (@len repeated $($value:tt).+) => {
        $($value).+.iter().map($crate::fmp4::Atom::encoded_len).sum::<usize>()
    };

    (@visit required $($value:tt).+ $visit:ident) => { $visit(&$($value).+) };
    (@visit optional $($value:tt).+ $visit:ident) => {
        if let Some(child) = &$($value).+ { $visit(child) }
    };
    (@visit repeated $($value:tt).+ $visit:ident) => {
        for child in &$($value).+ { $visit(child) }
    };
}

pub(crate) use container;
