//! Refinements: a child plan keeps its parent's seeds and references unless its own prompt named
//! new ones, and a refinement may swap the parent's sources for other photos of the library.

use std::collections::BTreeMap;

use reverie_shared::ids::PhotoId;
use reverie_shared::jobs::{PhotoRef, ReferenceRole};

use super::Plan;

/// A refinement keeps the parent's seeds and references unless the new prompt resolved its own: a role
/// the new prompt names replaces the parent's references of that role; the others are kept.
pub fn refine_plan(parent: &Plan, child: Plan) -> Plan {
    let mut references: Vec<PhotoRef> = Vec::new();
    let mut albums = child.reference_albums.clone();
    let mut explanation = child.explanation.clone();
    for role in [
        ReferenceRole::Subject,
        ReferenceRole::Background,
        ReferenceRole::Palette,
    ] {
        let new: Vec<&PhotoRef> = child.references.iter().filter(|r| r.role == role).collect();
        if new.is_empty() {
            for kept in parent.references.iter().filter(|r| r.role == role) {
                if let Some(a) = parent.reference_albums.get(kept.photo.as_str()) {
                    albums.insert(kept.photo.to_string(), a.clone());
                }
                explanation.push(format!(
                    "kept the parent's {role:?} photo {}",
                    kept.photo.short()
                ));
                references.push(kept.clone());
            }
        } else {
            references.extend(new.into_iter().cloned());
        }
    }
    // The faces behind the people's references follow the people: the child's when it named its own.
    let child_named_people = child
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Subject);
    let identity_source = if child_named_people { &child } else { parent };
    for kept in identity_source
        .references
        .iter()
        .filter(|r| r.role == ReferenceRole::Identity)
    {
        if let Some(a) = identity_source.reference_albums.get(kept.photo.as_str()) {
            albums.insert(kept.photo.to_string(), a.clone());
        }
        references.push(kept.clone());
    }
    // The parent's seeds, as many as the child has variants (new variants get fresh seeds).
    let mut seeds = child.seeds.clone();
    for (slot, seed) in seeds.iter_mut().zip(&parent.seeds) {
        *slot = *seed;
    }
    explanation.push("kept the parent's seeds".to_string());
    Plan {
        references,
        reference_albums: albums,
        seeds,
        explanation,
        ..child
    }
}

/// A parent's source replaced by another photo of the library (ingress checked both belong to the
/// tenant): `with` is the new photo (its role and face are taken per reference), `faces` the box of each
/// person's face in it, by the label the references carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReplacement {
    pub photo: PhotoId,
    pub with: PhotoRef,
    pub faces: BTreeMap<String, [u32; 4]>,
    /// The albums the new photo is in (consent is checked against them).
    pub albums: Vec<String>,
}

/// Applies a refinement's source swaps: every reference to a replaced photo now points at its
/// replacement in the same role and with the same label, a person's reference at that person's face in
/// it. Returns the swapped photos the plan no longer used (the new prompt replaced them itself).
pub fn replace_sources(plan: &mut Plan, replacements: &[SourceReplacement]) -> Vec<PhotoId> {
    let mut unused = Vec::new();
    for replacement in replacements {
        let mut replaced = 0;
        for reference in plan
            .references
            .iter_mut()
            .filter(|r| r.photo == replacement.photo)
        {
            let face_box = reference.face_box.and_then(|_| {
                let label = reference.label.as_deref().unwrap_or_default();
                replacement.faces.get(label).copied()
            });
            *reference = PhotoRef {
                role: reference.role,
                label: reference.label.clone(),
                face_box,
                ..replacement.with.clone()
            };
            replaced += 1;
        }
        if replaced == 0 {
            unused.push(replacement.photo.clone());
            continue;
        }
        plan.reference_albums.remove(replacement.photo.as_str());
        plan.reference_albums.insert(
            replacement.with.photo.to_string(),
            replacement.albums.clone(),
        );
        plan.explanation.push(format!(
            "replaced source {} with {}",
            replacement.photo.short(),
            replacement.with.photo.short()
        ));
    }
    unused
}

#[cfg(test)]
mod tests {
    use super::super::tests::candidate;
    use super::*;
    use crate::plan::{make_plan, PlanInput, PlannerSettings};
    use reverie_shared::ids::RequestId;

    #[test]
    fn swapped_sources_take_the_old_ones_role_and_label_and_consent_albums() {
        let settings = PlannerSettings::default();
        let input = PlanInput {
            variants: 1,
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            backgrounds: vec![candidate(5, "place:Lisbon", 0.9)],
            ..PlanInput::default()
        };
        let mut plan = make_plan(&input, &RequestId::new("p").unwrap(), &settings);
        let old = plan
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Background)
            .unwrap()
            .clone();
        let new = candidate(9, "place:Porto", 0.1).reference;
        let unused = replace_sources(
            &mut plan,
            &[
                SourceReplacement {
                    photo: old.photo.clone(),
                    with: new.clone(),
                    faces: BTreeMap::new(),
                    albums: vec!["Holiday".into()],
                },
                SourceReplacement {
                    photo: PhotoId::of_bytes(b"not in the plan"),
                    with: new.clone(),
                    faces: BTreeMap::new(),
                    albums: vec![],
                },
            ],
        );
        assert_eq!(unused, [PhotoId::of_bytes(b"not in the plan")]);
        let swapped = plan
            .references
            .iter()
            .find(|r| r.photo == new.photo)
            .unwrap();
        assert_eq!(swapped.role, ReferenceRole::Background);
        assert_eq!(swapped.label, old.label);
        assert!(!plan.references.iter().any(|r| r.photo == old.photo));
        assert_eq!(plan.reference_albums[new.photo.as_str()], ["Holiday"]);
        assert!(!plan.reference_albums.contains_key(old.photo.as_str()));
        assert!(plan
            .explanation
            .last()
            .unwrap()
            .starts_with("replaced source"));
    }

    #[test]
    fn refine_keeps_parent_seed_and_references_unless_replaced() {
        let settings = PlannerSettings::default();
        let parent_input = PlanInput {
            variants: 1,
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            backgrounds: vec![candidate(5, "place:Lisbon", 0.9)],
            ..PlanInput::default()
        };
        let parent = make_plan(&parent_input, &RequestId::new("p").unwrap(), &settings);
        let child_input = PlanInput {
            variants: 1,
            backgrounds: vec![candidate(6, "place:Porto", 0.8)],
            ..PlanInput::default()
        };
        let child = make_plan(&child_input, &RequestId::new("c").unwrap(), &settings);
        let refined = refine_plan(&parent, child);
        assert_eq!(refined.seeds, parent.seeds);
        let subject = refined
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Subject)
            .unwrap();
        assert_eq!(subject.photo, PhotoId::of_bytes(&[1]));
        let background = refined
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Background)
            .unwrap();
        assert_eq!(background.photo, PhotoId::of_bytes(&[6]));
    }
}
