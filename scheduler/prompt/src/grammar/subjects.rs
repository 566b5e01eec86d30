//! The subject passes: groups ("the two of us"), pets and relations ("Rex the dog", "my wife Zoë",
//! "our two cats"), self references ("me"), the remaining names, and objects (recorded, not
//! consumed).

use super::phrases::LEXICON;
use super::Parser;
use crate::lexicon::{COMMON_WORDS, NEVER_NAMES, POSSESSIVES, SELF_WORDS};
use crate::tokens::TokenKind;
use crate::{GroupMention, ObjectMention, PersonMention, PetMention};

impl Parser<'_> {
    /// "the two of us", "both of us", "all of us", "we", "us", "our family", "three people".
    pub(super) fn groups(&mut self) {
        for i in 0..self.tokens.len() {
            let start = if self.is_norm(i, &["the"]) { i + 1 } else { i };
            // "the two of us", "both of us", "all four of us"
            let (size, after_count) = if self.is_norm(start, &["both"]) {
                (Some(2), start + 1)
            } else if self.is_norm(start, &["all"]) {
                match self.count_at(start + 1) {
                    Some((n, end)) => (Some(n), end),
                    None => (None, start + 1),
                }
            } else if let Some((n, end)) = self.count_at(start) {
                (Some(n), end)
            } else {
                (None, start)
            };
            if after_count > start
                && self.is_norm(after_count, &["of"])
                && self.is_norm(after_count + 1, &["us"])
            {
                self.set_group(i, after_count + 2, size, true);
                continue;
            }
            // "three people", "five friends" are relations; "people" is the generic group.
            if let Some(n) = size {
                if start == i && self.is_norm(after_count, &["people", "persons", "adults"]) {
                    self.set_group(i, after_count + 1, Some(n), false);
                    continue;
                }
            }
            // "our family", "the whole family", "my family"
            if self.is_norm(i, &["my", "our", "the"]) {
                let mut j = i + 1;
                if self.is_norm(j, &["whole", "entire"]) {
                    j += 1;
                }
                if self.is_norm(j, &["family"]) {
                    self.set_group(i, j + 1, None, true);
                    continue;
                }
            }
            if self.is_norm(i, &["we", "us", "ourselves"]) && self.out.subjects.group.is_none() {
                self.set_group(i, i + 1, None, true);
            }
        }
    }

    fn set_group(&mut self, from: usize, to: usize, size: Option<u32>, includes_self: bool) {
        let text = self.span(from, to);
        self.mark_subject(from, to);
        match &mut self.out.subjects.group {
            // "we, the three of us": the later, more precise mention wins on size.
            Some(group) => {
                group.size = size.or(group.size);
                group.includes_self |= includes_self;
            }
            None => {
                self.out.subjects.group = Some(GroupMention {
                    text,
                    size,
                    includes_self,
                })
            }
        }
    }

    /// "Rex the dog", "Rex, our dog" (the kind after the name).
    pub(super) fn named_pets(&mut self) {
        for i in 0..self.tokens.len() {
            let Some(end) = self.name_run(i, false) else {
                continue;
            };
            let mut j = end;
            if self.tokens.get(j).is_some_and(|t| t.is_punct(",")) {
                j += 1;
            }
            if !self.is_norm(j, &["the", "our", "my"]) {
                continue;
            }
            let Some((stop, false, kind)) = self.longest(j + 1, &LEXICON.pets) else {
                continue;
            };
            let kind = (*kind).to_string();
            let name = self.name_text(i, end);
            let text = self.span(i, stop);
            self.mark_subject(i, stop);
            self.out.subjects.pets.push(PetMention {
                text,
                name: Some(name),
                kind: Some(kind),
                count: None,
                plural: false,
                owned: true,
                descriptors: Vec::new(),
            });
        }
    }

    /// "[my|our|Anna's] [count] [descriptors] (relation|pet kind) [called|named] [Name]".
    pub(super) fn relations_and_pets(&mut self) {
        for i in 0..self.tokens.len() {
            // Already part of a subject: an unowned pet stays unconsumed but must not match twice.
            if self.word(i).is_none() || self.subject.get(i).copied().unwrap_or(true) {
                continue;
            }
            // "the kids", "the dog": in a personal library these are the tenant's own.
            // "two of my friends", "three of our cats"
            let partitive = self.count_at(i).filter(|(_, end)| {
                self.is_norm(*end, &["of"]) && self.is_norm(end + 1, &POSSESSIVES)
            });
            let (owned, owner, mut j) = if let Some((_, end)) = partitive {
                (true, None, end + 2)
            } else if self.is_norm(i, &POSSESSIVES) || self.is_norm(i, &["the"]) {
                (true, None, i + 1)
            } else if self.word(i).is_some_and(|t| t.possessive && t.capitalised)
                && self.is_name_token(i, false)
            {
                (true, self.word(i).map(|t| t.text.clone()), i + 1)
            } else {
                (false, None, i)
            };
            let mut count = partitive.map(|(n, _)| n);
            if count.is_some() {
                // The count came before "of my"; a second one would be odd ("two of my 3 dogs").
            } else if let Some((n, end)) = self.count_at(j) {
                count = Some(n);
                j = end;
            } else if !owned && self.is_norm(j, &["a", "an"]) {
                count = Some(1);
                j += 1;
            }
            let descriptors_start = j;
            let mut kind_at = None;
            // Up to two descriptive words may sit before the kind: "our fluffy old cat".
            for offset in 0..3 {
                let at = descriptors_start + offset;
                if self.longest(at, &LEXICON.relations).is_some()
                    || self.longest(at, &LEXICON.pets).is_some()
                {
                    kind_at = Some(at);
                    break;
                }
                let is_descriptor = self.word(at).is_some_and(|t| {
                    t.kind == TokenKind::Word
                        && !t.capitalised
                        && !LEXICON.function.contains(t.norm.as_str())
                        && !t.possessive
                });
                if !is_descriptor {
                    break;
                }
            }
            let Some(kind_at) = kind_at else { continue };
            // Bare relations ("mum and dad") need no determiner; bare descriptors do ("old cat" is not).
            if !owned && count.is_none() && kind_at != i {
                continue;
            }
            let descriptors: Vec<String> = (descriptors_start..kind_at)
                .filter_map(|k| self.word(k).map(|t| t.text.clone()))
                .collect();
            if let Some((end, plural, relation)) = self.longest(kind_at, &LEXICON.relations) {
                let relation = (*relation).to_string();
                let (name, stop) = self.trailing_name(end);
                let text = self.span(i, stop);
                self.mark_subject(i, stop);
                self.out.subjects.people.push(PersonMention {
                    text,
                    is_self: false,
                    relation: Some(relation),
                    name,
                    owner,
                    count,
                    plural: plural || count.is_some_and(|n| n > 1),
                });
            } else if let Some((end, plural, kind)) = self.longest(kind_at, &LEXICON.pets) {
                let kind = (*kind).to_string();
                let (name, stop) = self.trailing_name(end);
                let text = self.span(i, stop);
                let owned = owned || name.is_some();
                if owned {
                    self.mark_subject(i, stop);
                } else {
                    // "a horse" is for the model to draw: recorded, but left in the free text.
                    self.subject
                        .iter_mut()
                        .take(stop)
                        .skip(i)
                        .for_each(|flag| *flag = true);
                }
                self.out.subjects.pets.push(PetMention {
                    text,
                    owned,
                    name,
                    kind: Some(kind),
                    count,
                    plural: plural || count.is_some_and(|n| n > 1),
                    descriptors,
                });
            }
        }
    }

    /// A name after a relation or kind: "Anna", "called Sunny", "named rex", ", Rex".
    fn trailing_name(&self, end: usize) -> (Option<String>, usize) {
        if self.is_norm(end, &["called", "named"]) {
            if let Some(stop) = self.name_run(end + 1, true) {
                return (Some(self.name_text(end + 1, stop)), stop);
            }
        }
        // Only a capitalised word directly after the kind is its name: "my dog Rex".
        if self.word(end).is_some_and(|t| t.capitalised) {
            if let Some(stop) = self.name_run(end, false) {
                return (Some(self.name_text(end, stop)), stop);
            }
        }
        (None, end)
    }

    /// "me", "I", "myself".
    pub(super) fn self_references(&mut self) {
        for i in 0..self.tokens.len() {
            let Some(token) = self.word(i) else { continue };
            // A lowercase "i" is a self reference only as a whole word, which the tokeniser ensures.
            if !SELF_WORDS.contains(&token.norm.as_str()) {
                continue;
            }
            let text = token.text.clone();
            self.mark_subject(i, i + 1);
            if self.out.subjects.people.iter().any(|p| p.is_self) {
                continue;
            }
            self.out.subjects.people.push(PersonMention {
                text,
                is_self: true,
                relation: None,
                name: None,
                owner: None,
                count: None,
                plural: false,
            });
        }
    }

    /// Remaining capitalised names, and lowercase unknown words listed next to a subject.
    pub(super) fn names(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            if self.sentence_start_name(i) {
                // "Rose and me at the beach": a common word starting a list of subjects is a name.
                self.push_name(i, i + 1);
                i += 1;
                continue;
            }
            if let Some(end) = self.name_run(i, false) {
                self.push_name(i, end);
                i = end;
                continue;
            }
            let lowercase_listed = self.word(i).is_some_and(|t| {
                t.kind == TokenKind::Word
                    && !t.capitalised
                    && !self.is_known(t)
                    && t.text.chars().all(char::is_alphabetic)
            }) && self.lists_with_subject(i, i + 1);
            if lowercase_listed {
                self.push_name(i, i + 1);
            }
            i += 1;
        }
    }

    /// A capitalised vocabulary word opening a sentence is a name when it heads a list of subjects
    /// ("Rose and me", "Sunny and Rex"), or, for words that are not everyday words (an object such
    /// as "rose"), when a link word follows ("Rose with a bouquet").
    fn sentence_start_name(&self, i: usize) -> bool {
        let Some(token) = self.word(i) else {
            return false;
        };
        let candidate = token.sentence_start
            && token.capitalised
            && token.kind == TokenKind::Word
            && self.is_known(token)
            && !LEXICON.function.contains(token.norm.as_str())
            && !NEVER_NAMES.contains(&token.norm.as_str())
            && !SELF_WORDS.contains(&token.norm.as_str());
        if !candidate {
            return false;
        }
        let next_is_link = self.tokens.get(i + 1).is_some_and(|t| {
            t.is_punct(",") || t.is_punct("&") || matches!(t.norm.as_str(), "and" | "with" | "&")
        });
        let next_is_subject = self.subject.get(i + 2).copied().unwrap_or(false)
            || self.name_run(i + 2, false).is_some();
        let everyday = COMMON_WORDS.contains(&token.norm.as_str());
        next_is_link && (next_is_subject || !everyday)
    }

    /// Whether tokens `from..to` are joined by "and", "&", "," or "with" to a subject.
    fn lists_with_subject(&self, from: usize, to: usize) -> bool {
        let is_link = |k: usize| {
            self.tokens.get(k).is_some_and(|t| {
                t.is_punct(",")
                    || t.is_punct("&")
                    || matches!(t.norm.as_str(), "and" | "with" | "&")
            })
        };
        let subject_at = |k: usize| self.subject.get(k).copied().unwrap_or(false);
        let after = is_link(to) && (subject_at(to + 1) || (is_link(to + 1) && subject_at(to + 2)));
        let before = from >= 2 && is_link(from - 1) && subject_at(from - 2);
        after || before
    }

    fn push_name(&mut self, from: usize, to: usize) {
        let name = self.name_text(from, to);
        self.mark_subject(from, to);
        if !self.out.subjects.names.contains(&name) {
            self.out.subjects.names.push(name);
        }
    }

    /// Objects are recorded but not consumed: "a red balloon" keeps its adjective for the model.
    pub(super) fn objects(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((_, plural, noun)) = self.longest(i, &LEXICON.objects) else {
                continue;
            };
            let noun = (*noun).to_string();
            let count = if i >= 1 {
                self.count_at(i - 1)
                    .filter(|(_, e)| *e == i)
                    .map(|(n, _)| n)
            } else {
                None
            };
            let count = count.or(if plural { None } else { Some(1) });
            if !self.out.subjects.objects.iter().any(|o| o.noun == noun) {
                self.out
                    .subjects
                    .objects
                    .push(ObjectMention { noun, count });
            }
        }
    }
}
