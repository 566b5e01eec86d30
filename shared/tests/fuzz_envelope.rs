//! Fuzz target: the scheduler↔worker envelope decoders (`decode_job`, `decode_job_versioned`,
//! `decode_events`). Messages come off shared queues, so any bytes may arrive: arbitrary bodies, and
//! valid messages of every version with bytes flipped, inserted, deleted, cut and with length prefixes
//! made huge, must decode or be refused with a reason, never panic or allocate from a length prefix.
//! Every job and event round-trips through its encoder (version 3 and 4; version 1/2 where the old
//! layout can say it). Case counts keep the file to a few seconds in debug.

use proptest::prelude::*;
use reverie_shared::envelope::{
    decode_events, decode_job, decode_job_versioned, encode_events, encode_events_current,
    encode_job, encode_job_v1, EnvelopeError, MAX_BODY_BYTES,
};
use reverie_shared::ids::{JobId, PhotoId, RequestId, ShardId, TenantId};
use reverie_shared::jobs::{
    AnalyseJob, Analysis, GenerateJob, IdentityCandidate, IdentityReport, IdentityVerdict, Job,
    JobEvent, JobSpec, OutputTarget, PersonIdentity, PhotoRef, Priority, ReferenceRole, RenderSpec,
    RendererKind,
};
use reverie_shared::testing::Edit;

// ---- strategies ---------------------------------------------------------------------------------

fn tenant() -> impl Strategy<Value = TenantId> {
    "[a-z][a-z0-9_-]{0,12}".prop_map(|s| TenantId::new(s).unwrap())
}

fn job_id() -> impl Strategy<Value = JobId> {
    "[a-z0-9]{1,12}\\.[0-9]{1,3}".prop_map(|s| JobId::new(s).unwrap())
}

fn request_id() -> impl Strategy<Value = RequestId> {
    "[a-z0-9]{1,16}".prop_map(|s| RequestId::new(s).unwrap())
}

fn shard_id() -> impl Strategy<Value = ShardId> {
    "s-[0-9]{4}".prop_map(|s| ShardId::new(s).unwrap())
}

fn photo_id() -> impl Strategy<Value = PhotoId> {
    any::<u64>().prop_map(|seed| PhotoId::of_bytes(&seed.to_le_bytes()))
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn finite() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        Just(1.0f32),
        -1.0e6f32..1.0e6f32
    ]
}

fn role() -> impl Strategy<Value = ReferenceRole> {
    prop::sample::select(vec![
        ReferenceRole::Subject,
        ReferenceRole::Background,
        ReferenceRole::Palette,
        ReferenceRole::Identity,
    ])
}

fn photo_ref() -> impl Strategy<Value = PhotoRef> {
    (
        photo_id(),
        shard_id(),
        any::<u64>(),
        any::<u64>(),
        role(),
        prop::option::of(any::<[u32; 4]>()),
        prop::option::of(text()),
    )
        .prop_map(
            |(photo, shard, offset, length, role, face_box, label)| PhotoRef {
                photo,
                shard,
                offset,
                length,
                role,
                face_box,
                label,
            },
        )
}

fn render() -> impl Strategy<Value = RenderSpec> {
    (
        (
            prop::sample::select(vec![RendererKind::Painterly, RendererKind::Diffusion]),
            text(),
            text(),
            text(),
            prop::option::of(text()),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            any::<u32>(),
            finite(),
            prop::option::of(text()),
            any::<u64>(),
            finite(),
            any::<bool>(),
            // Mostly the version-1 values, so that half the jobs also travel as version 1.
            prop_oneof![Just(0.0f32), finite()],
            prop_oneof![Just(1u32), any::<u32>()],
        ),
    )
        .prop_map(
            |(
                (renderer, prompt, negative_prompt, style, model, width, height),
                (
                    steps,
                    guidance,
                    scheduler,
                    seed,
                    strength,
                    palette_transfer,
                    identity_strength,
                    best_of,
                ),
            )| RenderSpec {
                renderer,
                prompt,
                negative_prompt,
                style,
                model,
                width,
                height,
                steps,
                guidance,
                scheduler,
                seed,
                strength,
                palette_transfer,
                identity_strength,
                best_of,
                adapters: Default::default(),
            },
        )
}

fn job() -> impl Strategy<Value = Job> {
    let generate = (
        job_id(),
        request_id(),
        tenant(),
        any::<u32>(),
        render(),
        prop::collection::vec(photo_ref(), 0..4),
        (prop::option::of(text()), prop::option::of(text())),
        prop::option::of(text()),
    )
        .prop_map(
            |(job, request, tenant, index, render, references, (destination, name), batch_run)| {
                JobSpec::Generate(GenerateJob {
                    job,
                    request,
                    tenant,
                    index,
                    render,
                    references,
                    output: OutputTarget { destination, name },
                    batch_run,
                })
            },
        );
    let analyse = (
        job_id(),
        tenant(),
        shard_id(),
        prop::collection::vec(
            prop::sample::select(vec![
                Analysis::Faces,
                Analysis::Palettes,
                Analysis::Fingerprints,
            ]),
            0..4,
        ),
    )
        .prop_map(|(job, tenant, shard, analyses)| {
            JobSpec::Analyse(AnalyseJob {
                job,
                tenant,
                shard,
                analyses,
            })
        });
    (
        prop_oneof![generate, analyse],
        any::<u32>(),
        prop::sample::select(vec![Priority::Interactive, Priority::Batch]),
        any::<u64>(),
    )
        .prop_map(|(spec, attempt, priority, accepted_ms)| Job {
            spec,
            attempt,
            priority,
            accepted_ms,
        })
}

fn person() -> impl Strategy<Value = PersonIdentity> {
    (
        text(),
        prop::option::of(finite()),
        prop::sample::select(vec![
            IdentityVerdict::Verified,
            IdentityVerdict::Weak,
            IdentityVerdict::Missing,
        ]),
    )
        .prop_map(|(person, distance, verdict)| PersonIdentity {
            person,
            distance,
            verdict,
        })
}

fn identity() -> impl Strategy<Value = IdentityReport> {
    (
        prop::collection::vec(person(), 0..3),
        prop::option::of(text()),
        any::<u64>(),
        prop::collection::vec(
            (any::<u64>(), prop::collection::vec(person(), 0..2))
                .prop_map(|(seed, people)| IdentityCandidate { seed, people }),
            0..3,
        ),
    )
        .prop_map(|(people, unchecked, seed, candidates)| IdentityReport {
            people,
            unchecked,
            seed,
            candidates,
        })
}

fn event() -> impl Strategy<Value = JobEvent> {
    prop_oneof![
        (job_id(), tenant(), text(), any::<u32>()).prop_map(|(job, tenant, worker, attempt)| {
            JobEvent::Started {
                job,
                tenant,
                worker,
                attempt,
            }
        }),
        (
            job_id(),
            tenant(),
            any::<u32>(),
            any::<u32>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        )
            .prop_map(
                |(job, tenant, step, total, preview_png)| JobEvent::Progress {
                    job,
                    tenant,
                    step,
                    total,
                    preview_png,
                }
            ),
        (
            job_id(),
            tenant(),
            prop::collection::vec(text(), 0..3),
            any::<u64>(),
            prop::option::of(identity()),
        )
            .prop_map(
                |(job, tenant, outputs, render_ms, identity)| JobEvent::Succeeded {
                    job,
                    tenant,
                    outputs,
                    render_ms,
                    identity,
                }
            ),
        (job_id(), tenant(), text(), any::<bool>(), any::<u32>()).prop_map(
            |(job, tenant, reason, retryable, attempt)| JobEvent::Failed {
                job,
                tenant,
                reason,
                retryable,
                attempt,
            }
        ),
    ]
}

/// What the version-1/2 layout carries of an event: everything but the identity check.
fn without_identity(event: &JobEvent) -> JobEvent {
    match event.clone() {
        JobEvent::Succeeded {
            job,
            tenant,
            outputs,
            render_ms,
            ..
        } => JobEvent::Succeeded {
            job,
            tenant,
            outputs,
            render_ms,
            identity: None,
        },
        other => other,
    }
}

// ---- mutations ----------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Bytes(Edit),
    /// Overwrites bytes with a bincode varint claiming a huge length (0xFD: a u64 follows).
    HugeLength {
        at: usize,
    },
    Version(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let edit = |e: Edit| Mutation::Bytes(e);
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(move |(at, bit)| edit(Edit::Flip { at, bit })),
        2 => (any::<usize>(), any::<u8>()).prop_map(move |(at, byte)| edit(Edit::Insert { at, byte })),
        2 => (any::<usize>(), 1usize..16).prop_map(move |(at, len)| edit(Edit::Delete { at, len })),
        1 => any::<usize>().prop_map(move |at| edit(Edit::Truncate { at })),
        2 => any::<usize>().prop_map(|at| Mutation::HugeLength { at }),
        1 => (0u8..6).prop_map(Mutation::Version),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Bytes(edit) => edit.apply(&mut bytes),
            Mutation::HugeLength { at } => {
                let at = 1 + at % bytes.len().max(1);
                let mut huge = vec![0xFD];
                huge.extend((1u64 << 60).to_le_bytes());
                let end = (at + huge.len()).min(bytes.len());
                if at <= end {
                    bytes.splice(at..end, huge);
                }
            }
            Mutation::Version(version) => {
                if let Some(first) = bytes.first_mut() {
                    *first = *version;
                }
            }
        }
    }
    bytes
}

/// Decodes `body` every way; whatever decodes re-encodes to a message that decodes the same (compared
/// as bytes: a mutated float may be NaN).
fn decode_everything(body: &[u8]) -> Result<(), TestCaseError> {
    let reason = |e: &EnvelopeError| {
        assert!(matches!(e.reason(), "malformed" | "unknown_version"), "{e}");
        assert!(!e.to_string().is_empty());
    };
    match decode_job_versioned(body) {
        Ok((job, _)) => {
            let encoded = encode_job(&job).unwrap();
            let again = decode_job(&encoded).unwrap();
            prop_assert_eq!(encode_job(&again).unwrap(), encoded);
        }
        Err(e) => reason(&e),
    }
    if let Err(e) = decode_job(body) {
        reason(&e);
    }
    match decode_events(body) {
        Ok(events) => {
            prop_assert!(!events.is_empty());
            let encoded = encode_events_current(&events).unwrap();
            let again = decode_events(&encoded).unwrap();
            prop_assert_eq!(encode_events_current(&again).unwrap(), encoded);
        }
        Err(e) => reason(&e),
    }
    Ok(())
}

// ---- properties ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fuzz_envelope_arbitrary_bodies_never_panic(
        version in prop_oneof![0u8..6, any::<u8>()],
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut body = vec![version];
        body.extend(payload);
        decode_everything(&body)?;
    }

    #[test]
    fn fuzz_envelope_mutated_jobs_never_panic(
        job in job(),
        legacy in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let body = match (legacy, encode_job_v1(&job)) {
            (true, Some(v1)) => v1.unwrap(),
            _ => encode_job(&job).unwrap(),
        };
        decode_everything(&mutate(body, &mutations))?;
    }

    #[test]
    fn fuzz_envelope_mutated_events_never_panic(
        events in prop::collection::vec(event(), 1..4),
        legacy in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let body = if legacy {
            encode_events(&events).unwrap()
        } else {
            encode_events_current(&events).unwrap()
        };
        decode_everything(&mutate(body, &mutations))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_envelope_jobs_round_trip(job in job()) {
        let body = encode_job(&job).unwrap();
        prop_assert_eq!(decode_job_versioned(&body).unwrap(), (job.clone(), 3));
        if let Some(v1) = encode_job_v1(&job) {
            prop_assert_eq!(decode_job_versioned(&v1.unwrap()).unwrap(), (job, 1));
        }
    }

    #[test]
    fn fuzz_envelope_events_round_trip(events in prop::collection::vec(event(), 1..4)) {
        let current = encode_events_current(&events).unwrap();
        prop_assert_eq!(decode_events(&current).unwrap(), events.clone());
        let legacy = encode_events(&events).unwrap();
        let expected: Vec<JobEvent> = events.iter().map(without_identity).collect();
        prop_assert_eq!(decode_events(&legacy).unwrap(), expected);
    }
}

/// Length prefixes claiming 2^60 elements or bytes, at every position of real messages, are refused
/// without allocating for them (a failed allocation would abort the test binary).
#[test]
fn fuzz_envelope_huge_length_prefixes_are_refused() {
    let runner_job = Job {
        spec: JobSpec::Analyse(AnalyseJob {
            job: JobId::new("r1.0").unwrap(),
            tenant: TenantId::new("alice").unwrap(),
            shard: ShardId::new("s-0001").unwrap(),
            analyses: vec![Analysis::Faces],
        }),
        attempt: 1,
        priority: Priority::Batch,
        accepted_ms: 1,
    };
    let progress = JobEvent::Progress {
        job: JobId::new("r1.0").unwrap(),
        tenant: TenantId::new("alice").unwrap(),
        step: 1,
        total: 2,
        preview_png: Some(vec![1, 2, 3]),
    };
    for body in [
        encode_job(&runner_job).unwrap(),
        encode_events_current(std::slice::from_ref(&progress)).unwrap(),
        encode_events(&[progress.clone(), progress]).unwrap(),
    ] {
        for at in 0..body.len() {
            let mutated = mutate(body.clone(), &[Mutation::HugeLength { at }]);
            let _ = decode_job(&mutated);
            let _ = decode_events(&mutated);
        }
    }
    let oversized = vec![3u8; MAX_BODY_BYTES + 1];
    assert!(matches!(
        decode_job(&oversized),
        Err(EnvelopeError::TooLarge { .. })
    ));
}
