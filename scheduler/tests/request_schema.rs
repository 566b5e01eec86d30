//! The request parser and the published JSON Schema (docs/schemas/request.v1.json) agree: the
//! schema's examples are accepted by both, a table of bad requests is refused by both, and random
//! requests built from valid and invalid field values get the same verdict from both. Proptest
//! also feeds arbitrary bytes and text to the request and prompt parsers: they must never panic.

use std::sync::LazyLock;

use proptest::prelude::*;
use reverie_scheduler::prompt::{parse_prompt, resolve, CatalogPerson, CatalogPet, LibraryCatalog};
use reverie_scheduler::request::{GenerationRequest, RequestError};
use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../../docs/schemas/request.v1.json");

fn schema() -> (Value, jsonschema::Validator) {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema file is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    (schema, validator)
}

/// Compiled once: the random comparisons run hundreds of cases.
static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| schema().1);

fn base() -> Value {
    json!({
        "schema_version": 1,
        "tenant": "alice",
        "prompt": "me at sunset",
        "n": 1,
        "priority": "interactive",
        "kind": "generate"
    })
}

fn with(changes: &[(&str, Value)]) -> Value {
    let mut request = base();
    for (field, value) in changes {
        if value.is_null() {
            request.as_object_mut().map(|o| o.remove(*field));
        } else {
            request[*field] = value.clone();
        }
    }
    request
}

#[test]
fn schema_examples_are_accepted_by_schema_and_parser_and_round_trip() {
    let (schema, validator) = schema();
    let examples = schema["examples"].as_array().expect("schema has examples");
    assert!(examples.len() >= 4);
    for example in examples {
        let errors: Vec<String> = validator
            .iter_errors(example)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "schema rejects its example {example}: {errors:?}"
        );
        let body = serde_json::to_vec(example).expect("serialise");
        let request = GenerationRequest::from_json(&body)
            .unwrap_or_else(|e| panic!("parser rejects example {example}: {e}"));
        let again: Value = serde_json::from_slice(&request.to_json()).expect("json");
        assert_eq!(&again, example, "round trip changes the example");
    }
}

#[test]
fn bad_requests_are_refused_by_schema_and_parser() {
    let (_, validator) = schema();
    let spec = json!({"album": "Hawaii", "style": "watercolor", "limit": 10, "to": "Hawaii art"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing tenant",
            with(&[("tenant", Value::Null)]),
            "missing_field",
        ),
        (
            "missing prompt",
            with(&[("prompt", Value::Null)]),
            "missing_field",
        ),
        (
            "unknown field",
            with(&[("promt", json!("x"))]),
            "unknown_field",
        ),
        (
            "schema version 2",
            with(&[("schema_version", json!(2))]),
            "unsupported_schema_version",
        ),
        (
            "schema version as text",
            with(&[("schema_version", json!("1"))]),
            "unsupported_schema_version",
        ),
        (
            "no schema version",
            with(&[("schema_version", Value::Null)]),
            "missing_schema_version",
        ),
        ("n zero", with(&[("n", json!(0))]), "invalid"),
        ("n ten thousand", with(&[("n", json!(10_000))]), "invalid"),
        ("n negative", with(&[("n", json!(-1))]), "wrong_type"),
        ("n as text", with(&[("n", json!("2"))]), "wrong_type"),
        (
            "size not multiple of 8",
            with(&[("size", json!({"width": 500, "height": 512}))]),
            "invalid",
        ),
        (
            "size too large",
            with(&[("size", json!({"width": 4096, "height": 512}))]),
            "invalid",
        ),
        (
            "size missing height",
            with(&[("size", json!({"width": 512}))]),
            "missing_field",
        ),
        ("steps zero", with(&[("steps", json!(0))]), "invalid"),
        (
            "guidance too high",
            with(&[("guidance", json!(31))]),
            "invalid",
        ),
        (
            "priority unknown",
            with(&[("priority", json!("urgent"))]),
            "wrong_type",
        ),
        (
            "kind unknown",
            with(&[("kind", json!("video"))]),
            "wrong_type",
        ),
        (
            "prompt with bell",
            with(&[("prompt", json!("me\u{7} at sunset"))]),
            "invalid",
        ),
        (
            "prompt with bidi override",
            with(&[("prompt", json!("me \u{202E} at sunset"))]),
            "invalid",
        ),
        ("prompt blank", with(&[("prompt", json!("   "))]), "invalid"),
        (
            "prompt 2001 chars",
            with(&[("prompt", json!("é".repeat(2001)))]),
            "invalid",
        ),
        (
            "prompt 100 KB",
            with(&[("prompt", json!("a".repeat(100 * 1024)))]),
            "invalid",
        ),
        (
            "negative prompt too long",
            with(&[("negative_prompt", json!("a".repeat(1001)))]),
            "invalid",
        ),
        ("style blank", with(&[("style", json!(" "))]), "invalid"),
        (
            "tenant with slash",
            with(&[("tenant", json!("../bob"))]),
            "invalid",
        ),
        (
            "tenant starting with dot",
            with(&[("tenant", json!(".bob"))]),
            "invalid",
        ),
        (
            "tenant too long",
            with(&[("tenant", json!("a".repeat(65)))]),
            "invalid",
        ),
        (
            "album_to_art without spec",
            with(&[("kind", json!("album_to_art"))]),
            "invalid",
        ),
        (
            "spec with generate",
            with(&[("album_to_art", spec.clone())]),
            "invalid",
        ),
        (
            "album_to_art refined",
            with(&[
                ("kind", json!("album_to_art")),
                ("album_to_art", spec.clone()),
                ("refine_of", json!("r1")),
            ]),
            "invalid",
        ),
        (
            "album_to_art limit zero",
            with(&[
                ("kind", json!("album_to_art")),
                (
                    "album_to_art",
                    json!({"album": "Hawaii", "style": "watercolor", "limit": 0, "to": "x"}),
                ),
            ]),
            "invalid",
        ),
        (
            "refine_of with slash",
            with(&[("refine_of", json!("a/b"))]),
            "invalid",
        ),
    ];
    for (name, request, code) in cases {
        assert!(!validator.is_valid(&request), "schema accepts '{name}'");
        let body = serde_json::to_vec(&request).expect("serialise");
        match GenerationRequest::from_json(&body) {
            Ok(_) => panic!("parser accepts '{name}'"),
            Err(error) => {
                assert_eq!(error.code(), code, "'{name}': {error}");
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

#[test]
fn integral_floats_count_as_integers_in_both() {
    let (_, validator) = schema();
    let request = with(&[
        ("schema_version", json!(1.0)),
        ("n", json!(2.0)),
        ("steps", json!(30.0)),
    ]);
    assert!(validator.is_valid(&request));
    let body = serde_json::to_vec(&request).expect("serialise");
    let parsed = GenerationRequest::from_json(&body).expect("2.0 is the integer 2");
    assert_eq!((parsed.variants, parsed.steps), (2, Some(30)));
    let fractional = with(&[("n", json!(2.5))]);
    assert!(!validator.is_valid(&fractional));
    let body = serde_json::to_vec(&fractional).expect("serialise");
    assert!(GenerationRequest::from_json(&body).is_err());
}

#[test]
fn non_json_and_non_objects_are_refused_with_structured_errors() {
    for body in [
        &b""[..],
        b"{",
        b"null",
        b"\"text\"",
        b"[]",
        b"{\"a\":}",
        &[0xff, 0xfe, 0x00],
    ] {
        let error = GenerationRequest::from_json(body).expect_err("must be refused");
        assert!(matches!(
            error,
            RequestError::MalformedJson { .. } | RequestError::NotAnObject { .. }
        ));
        let reply = serde_json::to_value(&error).expect("errors serialise for replies");
        assert!(reply["code"].is_string());
    }
}

/// Values for each field: valid ones (absent counts as valid for optional fields) and invalid ones.
/// Valid values are drawn nine times out of ten, so about a fifth of the random requests are valid
/// and the comparison exercises acceptance as well as refusal.
fn field_value(field: &'static str) -> BoxedStrategy<Option<Value>> {
    let (valid, invalid): (Vec<Option<Value>>, Vec<Option<Value>>) = match field {
        "schema_version" => (
            vec![Some(json!(1))],
            vec![Some(json!(2)), Some(json!("1")), None],
        ),
        "tenant" => (
            vec![Some(json!("alice")), Some(json!("a.b-c_d"))],
            vec![
                Some(json!("")),
                Some(json!("x/y")),
                Some(json!("zoë")),
                None,
            ],
        ),
        "prompt" => (
            vec![
                Some(json!("me and my dog at sunset")),
                Some(json!("tab\tand\nnewline")),
                Some(json!("x".repeat(2000))),
            ],
            vec![
                Some(json!("bell\u{7}")),
                Some(json!("x".repeat(2001))),
                Some(json!(" ")),
                None,
            ],
        ),
        "negative_prompt" => (
            vec![None, Some(json!("blurry"))],
            vec![Some(json!("\u{1b}[31m"))],
        ),
        "n" => (
            vec![Some(json!(1)), Some(json!(16)), Some(json!(4.0))],
            vec![
                Some(json!(2.5)),
                Some(json!(17)),
                Some(json!(0)),
                Some(json!(-3)),
                Some(json!(4_294_967_296u64)),
                None,
            ],
        ),
        "size" => (
            vec![
                None,
                Some(json!({"width": 512, "height": 512})),
                Some(json!({"width": 64, "height": 2048})),
            ],
            vec![
                Some(json!({"width": 60, "height": 512})),
                Some(json!({"width": 516, "height": 512})),
                Some(json!({"width": 512, "height": 512, "depth": 3})),
            ],
        ),
        "steps" => (
            vec![None, Some(json!(1)), Some(json!(150))],
            vec![Some(json!(151)), Some(json!(0))],
        ),
        "guidance" => (
            vec![None, Some(json!(0)), Some(json!(7.5)), Some(json!(30))],
            vec![Some(json!(-0.5)), Some(json!(99))],
        ),
        "seed" => (
            vec![None, Some(json!(0)), Some(json!(u64::MAX))],
            vec![Some(json!(-1)), Some(json!("7"))],
        ),
        "style" => (
            vec![None, Some(json!("watercolor"))],
            vec![Some(json!("")), Some(json!("x".repeat(201)))],
        ),
        "priority" => (
            vec![Some(json!("interactive")), Some(json!("batch"))],
            vec![Some(json!("now")), None],
        ),
        "kind" => (
            vec![Some(json!("generate"))],
            vec![Some(json!("album_to_art")), Some(json!("other")), None],
        ),
        "album_to_art" => (
            vec![None],
            vec![
                Some(json!({"album": "Hawaii", "style": "watercolor", "limit": 10, "to": "Art"})),
                Some(json!({"album": "", "style": "watercolor", "limit": 10, "to": "Art"})),
                Some(json!({"album": "Hawaii", "style": "watercolor", "limit": 1001, "to": "Art"})),
                Some(json!({"album": "Hawaii", "style": "watercolor", "to": "Art"})),
            ],
        ),
        "refine_of" => (
            vec![None, Some(json!("req-1"))],
            vec![Some(json!("bad id"))],
        ),
        _ => (vec![None], vec![Some(json!(true))]),
    };
    prop_oneof![
        9 => proptest::sample::select(valid),
        1 => proptest::sample::select(invalid),
    ]
    .boxed()
}

fn random_request() -> impl Strategy<Value = Value> {
    let fields = [
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
        "extra",
    ];
    fields
        .into_iter()
        .map(|f| field_value(f).prop_map(move |v| (f, v)))
        .collect::<Vec<_>>()
        .prop_map(|pairs| {
            let mut object = serde_json::Map::new();
            for (field, value) in pairs {
                if let Some(value) = value {
                    object.insert(field.to_string(), value);
                }
            }
            Value::Object(object)
        })
}

fn sample_catalog() -> LibraryCatalog {
    LibraryCatalog {
        people: vec![CatalogPerson {
            id: "p1".into(),
            name: "Anna".into(),
            aliases: vec!["my wife".into()],
            is_self: false,
        }],
        pets: vec![CatalogPet {
            id: "d1".into(),
            name: "Rex".into(),
            kind: "dog".into(),
            aliases: vec![],
        }],
        albums: vec!["Hawaii 2023".into()],
        light_tags: vec!["sunset".into()],
        photo_count: 10,
        ..LibraryCatalog::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn schema_and_parser_agree_on_random_requests(request in random_request()) {
        let body = serde_json::to_vec(&request).expect("serialise");
        let parsed = GenerationRequest::from_json(&body);
        prop_assert_eq!(
            VALIDATOR.is_valid(&request),
            parsed.is_ok(),
            "request {} -> parser {:?}", request, parsed
        );
    }

    #[test]
    fn request_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match GenerationRequest::from_json(&body) {
            Ok(request) => prop_assert!(request.variants >= 1),
            Err(error) => prop_assert!(!error.code().is_empty() && !error.to_string().is_empty()),
        }
    }

    #[test]
    fn request_parser_never_panics_on_json_like_text(body in "\\{(\"[a-z_]{1,12}\": ?(\"[^\"]{0,20}\"|-?[0-9]{1,25}|true|null|\\{\\}|\\[\\]), ?){0,8}\\}") {
        match GenerationRequest::from_json(body.as_bytes()) {
            Ok(request) => prop_assert!(request.variants >= 1),
            Err(error) => prop_assert!(!error.code().is_empty()),
        }
    }

    #[test]
    fn prompt_parser_never_panics_and_stays_within_its_input(prompt in "\\PC{0,300}|[ -~]{0,300}|.{0,50}") {
        let parsed = parse_prompt(&prompt);
        prop_assert!(parsed.free_text.len() <= prompt.len() + 8);
        let resolution = resolve(&parsed, &sample_catalog());
        for unresolved in &resolution.unresolved {
            prop_assert!(!unresolved.message.is_empty());
        }
        prop_assert!(serde_json::to_string(&parsed).is_ok());
        prop_assert!(serde_json::to_string(&resolution).is_ok());
    }

    #[test]
    fn prompt_parser_never_panics_on_vocabulary_soup(words in proptest::collection::vec(
        proptest::sample::select(vec![
            "me", "I", "my", "our", "the", "a", "two", "3", "of", "us", "dog", "cats", "Rex", "Anna's", "wife",
            "called", "in", "at", "on", "Paris", "home", "sunset", "golden", "hour", "beach", "snowy", "style",
            "inspired", "by", "Monet", "like", "colours", "palette", "album", "Hawaii", ",", "and", "-", "'",
            "Zoë", "José", "watercolour", "pop-art", "front", "family", "both", "all", "whole", "named",
        ]),
        0..40,
    )) {
        let prompt = words.join(" ");
        let parsed = parse_prompt(&prompt);
        let resolution = resolve(&parsed, &sample_catalog());
        prop_assert!(resolution.unresolved.iter().all(|u| !u.message.is_empty()));
    }
}
