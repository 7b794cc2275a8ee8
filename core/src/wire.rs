//! Internally tagged JSON enums (`{"op": "take", "cost": 1, ...}`, the Durable Objects'
//! operations and replies and the flight's frames) read without serde's buffered `Content`:
//! the derive for such an enum buffers every message into a tree of its own and instantiates
//! each variant's reader for it, about a twentieth of the gateway's wasm. [`tagged_enum!`]
//! keeps the wire form exactly (it derives `Serialize` as before) and reads a message in two
//! passes over its JSON text instead: the tag alone, then the named variant's fields straight
//! from the text. Only `serde_json` can read such an enum (the text is taken as a
//! [`serde_json::value::RawValue`]).

/// Declares an internally tagged enum of unit and struct variants (`tag = "op";`, then the
/// enum as it would be written with `#[serde(tag = "op", rename_all = "snake_case")]`, without
/// deriving `Serialize` and `Deserialize`, which the macro does).
macro_rules! tagged_enum {
    (
        tag = $tag:literal;
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident $( { $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)? } )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(serde::Serialize)]
        #[serde(tag = $tag, rename_all = "snake_case")]
        $vis enum $name {
            $( $(#[$vmeta])* $variant $( { $( $(#[$fmeta])* $field : $fty ),* } )? ),*
        }

        impl<'de> serde::Deserialize<'de> for $name {
            // The variants' docs ride along with their `cfg`s onto the match arms.
            #[allow(unused_doc_comments)]
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "snake_case")]
                enum Tag {
                    $( $(#[$vmeta])* $variant ),*
                }
                #[derive(serde::Deserialize)]
                struct Tagged {
                    #[serde(rename = $tag)]
                    tag: Tag,
                }
                let raw = <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(d)?;
                let text = raw.get();
                let err = <D::Error as serde::de::Error>::custom::<serde_json::Error>;
                let tagged: Tagged = serde_json::from_str(text).map_err(err)?;
                match tagged.tag {
                    $(
                        $(#[$vmeta])*
                        Tag::$variant => $crate::wire::tagged_enum!(
                            @variant $name $variant text err $( { $( $(#[$fmeta])* $field : $fty ),* } )?
                        ),
                    )*
                }
            }
        }
    };
    (@variant $name:ident $variant:ident $text:ident $err:ident) => {
        Ok($name::$variant)
    };
    (@variant $name:ident $variant:ident $text:ident $err:ident
        { $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* }) => {{
        #[derive(serde::Deserialize)]
        struct Fields {
            $( $(#[$fmeta])* $field : $fty ),*
        }
        let f: Fields = serde_json::from_str($text).map_err($err)?;
        Ok($name::$variant { $( $field: f.$field ),* })
    }};
}

pub(crate) use tagged_enum;

#[cfg(test)]
mod tests {
    tagged_enum! {
        tag = "op";
        #[derive(Debug, PartialEq)]
        enum Op {
            Stop,
            Take {
                cost: u32,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                note: Option<String>,
            },
            Batch { ops: Vec<Op> },
        }
    }

    fn read(text: &str) -> Result<Op, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_serde_writes_and_the_tag_anywhere() {
        let op = Op::Batch {
            ops: vec![
                Op::Take {
                    cost: 2,
                    note: Some("a \"b\"".into()),
                },
                Op::Stop,
            ],
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"op":"batch","ops":[{"op":"take","cost":2,"note":"a \"b\""},{"op":"stop"}]}"#
        );
        assert_eq!(read(&text), Ok(op));
        // The tag last, unknown members, and a default left out.
        assert_eq!(
            read(r#"{"cost":7,"extra":[1,{"op":"stop"}],"op":"take"}"#),
            Ok(Op::Take {
                cost: 7,
                note: None
            })
        );
        assert_eq!(read(r#" {"op" : "stop"} "#), Ok(Op::Stop));
    }

    #[test]
    fn refuses_what_the_derive_refuses() {
        for bad in [
            r#"{"op":"jump"}"#,
            r#"{"cost":1}"#,
            r#"{"op":"take"}"#,
            r#"{"op":"take","cost":-1}"#,
            r#"{"op":"take","cost":"1"}"#,
            r#"{"op":"batch","ops":[{"op":"nope"}]}"#,
            r#"["take",1]"#,
            r#"{"op":"take","cost":1"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
