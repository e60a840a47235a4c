//! Bad input at scale, for property tests: strategies that turn a valid JSON body into bodies a
//! parser must refuse (cut short, a field of the wrong type or a number no type holds, nested
//! past any sane depth, not UTF-8), and arbitrary bytes.
//!
//! Test code only: the lib's unit tests use it as `crate::bad_input`, the integration tests
//! include the same file (`tests/it/main.rs`), so both speak of the same bad input.

use proptest::prelude::*;
use serde_json::Value;

/// What a field holds when it is right; any other kind of value is wrong for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Object,
    List,
    Integer,
    Bool,
}

/// A field a parser reads, by JSON pointer, and what it must hold.
pub type Field = (&'static str, Kind);

/// 2^70: larger than any integer type we parse into.
pub const HUGE_INT: &str = "1180591620717411303424";

/// Nested arrays this deep: far past serde_json's recursion limit (128).
pub const DEEP: usize = 10_000;

/// `[[[…]]]`, `depth` levels.
pub fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `{"a":{"a":…{}}}`, `depth` levels.
pub fn nested_objects(depth: usize) -> String {
    format!("{}{{}}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// JSON texts that are not of `kind` (never `null`: an optional field may be null).
pub fn wrong_for(kind: Kind) -> Vec<String> {
    let numbers = [
        "1e400".to_string(),
        "-1e400".to_string(),
        HUGE_INT.to_string(),
        format!("-{HUGE_INT}"),
        "0".to_string(),
        "1.5".to_string(),
    ];
    let mut out: Vec<String> = Vec::new();
    if kind != Kind::Text {
        out.extend(["\"x\"".to_string(), "\"\"".to_string(), "\"1\"".to_string()]);
    }
    match kind {
        // 1e400 and 2^70 fit no integer; 1.5 is not one; the others are fine ones.
        Kind::Integer => out.extend(
            numbers
                .iter()
                .filter(|n| !matches!(n.as_str(), "0"))
                .cloned(),
        ),
        _ => out.extend(numbers),
    }
    if kind != Kind::Bool {
        out.extend(["true".to_string(), "false".to_string()]);
    }
    if kind != Kind::List {
        out.extend(["[]".to_string(), "[\"x\"]".to_string(), nested_arrays(DEEP)]);
    }
    if kind != Kind::Object {
        out.extend(["{}".to_string(), "{\"a\":\"b\"}".to_string()]);
    }
    out
}

/// Replaces the value at `pointer` in `body` with the raw bytes `raw` (any bytes, not
/// necessarily JSON), and serialises the rest as it was.
pub fn replace_raw(body: &Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    const MARK: &str = "\u{1}bad-input-here\u{1}";
    let mut marked = body.clone();
    if let Some(slot) = marked.pointer_mut(pointer) {
        *slot = Value::String(MARK.into());
    } else if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(Value::Object(map)) = marked.pointer_mut(parent)
    {
        map.insert(key.to_string(), Value::String(MARK.into()));
    }
    let text = marked.to_string();
    let quoted = serde_json::to_string(MARK).unwrap_or_default();
    match text.split_once(&quoted) {
        Some((before, after)) => [before.as_bytes(), raw, after.as_bytes()].concat(),
        None => text.into_bytes(),
    }
}

/// `body` with one of `fields` holding a value of the wrong kind (a huge number among them).
pub fn retyped(body: Value, fields: &'static [Field]) -> BoxedStrategy<Vec<u8>> {
    prop::sample::select(fields)
        .prop_flat_map(move |(pointer, kind)| {
            let body = body.clone();
            prop::sample::select(wrong_for(kind))
                .prop_map(move |raw| replace_raw(&body, pointer, raw.as_bytes()))
        })
        .boxed()
}

/// Byte sequences that are not UTF-8: stray continuation bytes, a lead byte cut short, an
/// overlong encoding, an encoded surrogate, bytes that never occur.
pub fn not_utf8() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        vec![0x80],
        vec![0xbf, 0x80],
        vec![0xc3],
        vec![0xe2, 0x82],
        vec![0xc0, 0xaf],
        vec![0xed, 0xa0, 0x80],
        vec![0xf8, 0x88, 0x80, 0x80, 0x80],
        vec![0xff],
        vec![0xfe, 0xff],
    ])
}

/// `body` with a string at one of `pointers` (a field read or one ignored) that is not UTF-8.
pub fn invalid_utf8(body: Value, pointers: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    (
        prop::sample::select(pointers),
        not_utf8(),
        "[a-z ]{0,8}",
        "[a-z ]{0,8}",
    )
        .prop_map(move |(pointer, bad, before, after)| {
            let raw = [b"\"", before.as_bytes(), &bad, after.as_bytes(), b"\""].concat();
            replace_raw(&body, pointer, &raw)
        })
        .boxed()
}

/// Every proper prefix of `body` (which must be one compact JSON object or array): none of them
/// is JSON.
pub fn truncated(body: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = body.len();
    (0..len).prop_map(move |n| body[..n].to_vec()).boxed()
}

/// Bodies nested far too deep, whole or in a field: arrays or objects, closed or not.
pub fn too_deep(body: Value, pointers: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    let whole = prop_oneof![
        Just(nested_arrays(DEEP).into_bytes()),
        Just(nested_objects(DEEP).into_bytes()),
        Just("[".repeat(DEEP).into_bytes()),
        (129..2_000usize).prop_map(|d| nested_arrays(d).into_bytes()),
    ];
    let inside = (
        prop::sample::select(pointers),
        prop_oneof![
            Just(nested_arrays(DEEP)),
            Just(nested_objects(DEEP)),
            (129..2_000usize).prop_map(nested_objects),
        ],
    )
        .prop_map(move |(pointer, deep)| replace_raw(&body, pointer, deep.as_bytes()));
    prop_oneof![whole, inside].boxed()
}

/// Arbitrary bytes, mostly short, sometimes JSON-looking.
pub fn arbitrary_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(
            prop::sample::select(b"{}[]\":,0123456789.eE-+ tfnrulsa\\".to_vec()),
            0..256
        ),
    ]
    .boxed()
}

/// `body` with a few bytes changed, inserted or removed (sometimes still valid JSON).
pub fn mutated(body: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = body.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0..3u8), 1..4)
        .prop_map(move |edits| {
            let mut out = body.clone();
            for (at, byte, how) in edits {
                let at = at.min(out.len());
                match how {
                    0 if at < out.len() => out[at] = byte,
                    1 => out.insert(at, byte),
                    _ if at < out.len() => {
                        out.remove(at);
                    }
                    _ => out.push(byte),
                }
            }
            out
        })
        .boxed()
}

/// Whether `bytes` are a JSON object (UTF-8, within serde_json's depth) at all.
pub fn is_json_object(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.is_object())
}
