//! Fuzz target: the request parser (`GenerationRequest::from_json`), the door every generation request
//! comes through (HTTP and the requests queue). Structure-aware: the schema's examples with bytes
//! flipped, inserted, deleted, cut and repeated, and with fields removed, added or replaced by hostile
//! JSON values (huge and fractional numbers, control and bidi characters, deep nesting). The parser
//! never panics, every refusal has a code, and whatever it accepts round-trips through `to_json`
//! unchanged. `request_schema.rs` covers arbitrary bytes and the schema/parser agreement.

use std::sync::LazyLock;

use proptest::prelude::*;
use reverie_scheduler::request::{GenerationRequest, MAX_REQUEST_BYTES};
use reverie_shared::testing::{edited, Edit as ByteEdit};
use serde_json::{json, Map, Value};

const SCHEMA: &str = include_str!("../../docs/schemas/request.v1.json");

static EXAMPLES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    schema["examples"].as_array().expect("examples").clone()
});

/// Parses `body`; checks the invariants of either answer. Returns whether it was accepted.
fn check(body: &[u8]) -> Result<bool, TestCaseError> {
    match GenerationRequest::from_json(body) {
        Ok(request) => {
            let again = GenerationRequest::from_json(&request.to_json()).map_err(|e| {
                TestCaseError::fail(format!("re-parse of an accepted request: {e}"))
            })?;
            prop_assert_eq!(&again, &request);
            prop_assert!(request.variants >= 1);
            Ok(true)
        }
        Err(error) => {
            prop_assert!(!error.code().is_empty());
            prop_assert!(!error.to_string().is_empty());
            Ok(false)
        }
    }
}

fn byte_mutation() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        3 => (any::<usize>(), prop::sample::select(b"{}[]\",:.-+eE0129\\ \0\xc3\xff".to_vec()))
            .prop_map(|(at, byte)| ByteEdit::Insert { at, byte }),
        2 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
        1 => (any::<usize>(), 1usize..32, 1usize..100)
            .prop_map(|(at, len, times)| ByteEdit::Repeat { at, len, times }),
    ]
}

/// JSON values a hostile client might put anywhere.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(16),
            json!(17),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(2.0),
            json!(2.5),
            json!(-0.0),
            json!(1e300),
            json!(-1e300),
            json!(9.0e15),
            json!(1.7976931348623157e308),
            json!(f64::MIN_POSITIVE),
        ]),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |v| v.is_finite())
            .prop_map(|v| json!(v)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "\u{202E}evil",
            "\u{2066}x\u{2069}",
            "a\u{7}b",
            "line\nbreak\ttab",
            "interactive",
            "batch",
            "generate",
            "album_to_art",
            "3f9c2a7e1b8d4c6f",
            "../../etc/passwd",
            "alice",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "x{2001}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "schema_version",
    "tenant",
    "prompt",
    "negative_prompt",
    "n",
    "size",
    "steps",
    "guidance",
    "seed",
    "style",
    "priority",
    "kind",
    "album_to_art",
    "refine_of",
    "identity_strength",
    "best_of",
    "replace_sources",
];

#[derive(Debug, Clone)]
enum Edit {
    Remove(&'static str),
    Set(&'static str, Value),
    /// A field inside `size` or `album_to_art`.
    SetInner(&'static str, &'static str, Value),
    Unknown(String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = prop::sample::select(FIELDS);
    prop_oneof![
        2 => field.clone().prop_map(Edit::Remove),
        5 => (field, hostile_value()).prop_map(|(f, v)| Edit::Set(f, v)),
        3 => (
            prop::sample::select(vec![
                ("size", "width"),
                ("size", "height"),
                ("album_to_art", "album"),
                ("album_to_art", "limit"),
                ("album_to_art", "style"),
                ("album_to_art", "to"),
            ]),
            hostile_value()
        )
            .prop_map(|((outer, inner), v)| Edit::SetInner(outer, inner, v)),
        1 => ("[a-z_]{1,10}", hostile_value()).prop_map(|(f, v)| Edit::Unknown(f, v)),
    ]
}

fn apply(mut request: Value, edits: &[Edit]) -> Value {
    for edit in edits {
        let Some(object) = request.as_object_mut() else {
            break;
        };
        match edit {
            Edit::Remove(field) => {
                object.remove(*field);
            }
            Edit::Set(field, value) => {
                object.insert(field.to_string(), value.clone());
            }
            Edit::SetInner(outer, inner, value) => {
                let slot = object.entry(outer.to_string()).or_insert_with(|| json!({}));
                if let Some(inner_object) = slot.as_object_mut() {
                    inner_object.insert(inner.to_string(), value.clone());
                }
            }
            Edit::Unknown(field, value) => {
                object.insert(field.clone(), value.clone());
            }
        }
    }
    request
}

/// Requests within every rule, for the round trip.
fn valid_request() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["alice", "family-smith", "t1"]),
        "[a-zA-Z\u{e9}][a-zA-Z ,.'!?0-9\u{e9}\u{4e2d}\u{1f415}]{0,199}",
        prop::option::of("[a-z ]{1,40}"),
        1u32..=16,
        prop::option::of((8u32..=256, 8u32..=256)),
        prop::option::of(1u32..=150),
        prop::option::of((0u32..=300).prop_map(|g| g as f32 / 10.0)),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::sample::select(vec!["watercolor", "oil painting"])),
        prop::sample::select(vec!["interactive", "batch"]),
        prop::option::of((0u32..=200).prop_map(|s| s as f32 / 10.0)),
        prop::option::of(1u32..=8),
    )
        .prop_map(
            |(
                tenant,
                prompt,
                negative,
                n,
                size,
                steps,
                guidance,
                seed,
                style,
                priority,
                identity,
                best_of,
            )| {
                let mut request = json!({
                    "schema_version": 1,
                    "tenant": tenant,
                    "prompt": prompt,
                    "n": n,
                    "priority": priority,
                    "kind": "generate",
                });
                let object = request.as_object_mut().unwrap();
                let mut set = |field: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        object.insert(field.to_string(), value);
                    }
                };
                set("negative_prompt", negative.map(|v| json!(v)));
                set(
                    "size",
                    size.map(|(w, h)| json!({"width": w * 8, "height": h * 8})),
                );
                set("steps", steps.map(|v| json!(v)));
                set("guidance", guidance.map(|v| json!(v)));
                set("seed", seed.map(|v| json!(v)));
                set("style", style.map(|v| json!(v)));
                set("identity_strength", identity.map(|v| json!(v)));
                set("best_of", best_of.map(|v| json!(v)));
                request
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fuzz_request_byte_mutations_of_valid_requests(
        example in 0usize..4,
        mutations in prop::collection::vec(byte_mutation(), 1..6),
    ) {
        let examples = &*EXAMPLES;
        let body = serde_json::to_vec(&examples[example % examples.len()]).unwrap();
        check(&edited(body, &mutations))?;
    }

    #[test]
    fn fuzz_request_field_edits_of_valid_requests(
        example in 0usize..4,
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let examples = &*EXAMPLES;
        let request = apply(examples[example % examples.len()].clone(), &edits);
        check(&serde_json::to_vec(&request).unwrap())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_request_valid_requests_are_accepted_and_round_trip(request in valid_request()) {
        let body = serde_json::to_vec(&request).unwrap();
        prop_assert!(check(&body)?, "refused {}: {:?}", request, GenerationRequest::from_json(&body).err());
        let parsed = GenerationRequest::from_json(&body).unwrap();
        let written: Value = serde_json::from_slice(&parsed.to_json()).unwrap();
        // What was sent comes back, field for field (floats as the f32 they are held in).
        let normalise = |v: &Value| -> Value {
            let mut v = v.clone();
            for field in ["guidance", "identity_strength"] {
                if let Some(x) = v.get(field).and_then(Value::as_f64) {
                    v[field] = json!((x as f32) as f64);
                }
            }
            v
        };
        prop_assert_eq!(normalise(&written), normalise(&request));
    }
}

#[test]
fn fuzz_request_examples_are_accepted() {
    for example in EXAMPLES.iter() {
        assert!(
            check(&serde_json::to_vec(example).unwrap()).unwrap(),
            "{example}"
        );
    }
}

/// Nesting far past serde_json's recursion limit is an error, never a stack overflow, in every field.
#[test]
fn fuzz_request_deep_nesting_is_refused() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let depth = 50_000;
        let deep = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        for body in [
            deep.clone(),
            format!(r#"{{"schema_version":1,"tenant":"alice","prompt":{deep}}}"#),
            format!(r#"{{"schema_version":1,"size":{deep}}}"#),
        ] {
            let error = GenerationRequest::from_json(body.as_bytes()).expect_err("deep nesting");
            assert!(!error.code().is_empty());
        }
    }
}

#[test]
fn fuzz_request_bodies_over_the_limit_are_refused_before_parsing() {
    let body = vec![b' '; MAX_REQUEST_BYTES + 1];
    let error = GenerationRequest::from_json(&body).expect_err("too large");
    assert_eq!(error.code(), "too_large");
}
