//! Fuzz target: the XMP sidecar reader (`reverie_library::xmp::parse_xmp`). Sidecars come from the
//! person's files, so anything may be in them: arbitrary text, XML soup, and mutations (flipped,
//! inserted, deleted, truncated and repeated bytes) of real Lightroom / digiKam / darktable sidecars
//! must never panic, and what the reader returns always keeps its invariants. Sidecars written from
//! known facts read back as those facts. Case counts keep the whole file to a few seconds in debug.

use proptest::prelude::*;
use reverie_library::xmp::{parse_xmp, XmpFacts};
use reverie_shared::testing::{edited, Edit};

const LIGHTROOM: &str = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
   xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmp:Rating="4">
  <dc:subject><rdf:Bag><rdf:li>beach</rdf:li><rdf:li>Rex &amp; me</rdf:li></rdf:Bag></dc:subject>
  <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Hawaii|Waikiki</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Evening swim</rdf:li></rdf:Alt></dc:description>
  <mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:RegionList><rdf:Bag>
   <rdf:li><rdf:Description mwg-rs:Name="Anna" mwg-rs:Type="Face">
     <mwg-rs:Area stArea:x="0.5" stArea:y="0.4" stArea:w="0.2" stArea:h="0.3" stArea:unit="normalized"/>
   </rdf:Description></rdf:li>
   <rdf:li><rdf:Description mwg-rs:Name="Rex" mwg-rs:Type="Pet"/></rdf:li>
  </rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>
 </rdf:Description></rdf:RDF></x:xmpmeta>"#;

const DIGIKAM: &str = r#"<?xpacket begin="﻿" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmp:Rating="7" dc:description="Attribute description">
   <digiKam:TagsList><rdf:Seq><rdf:li>Family/Anna</rdf:li><rdf:li>Garden</rdf:li></rdf:Seq></digiKam:TagsList>
   <xmp:Rating>2</xmp:Rating>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#;

const DARKTABLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE x [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:darktable="http://darktable.sf.net/">
  <dc:subject><rdf:Bag><rdf:li>&lol2; &#x41;&#65; &quot;quoted&quot;</rdf:li></rdf:Bag></dc:subject>
 </rdf:Description></rdf:RDF></x:xmpmeta>"#;

const SAMPLES: &[&str] = &[LIGHTROOM, DIGIKAM, DARKTABLE];

/// What any successful parse must hold.
fn check(facts: &XmpFacts) -> Result<(), TestCaseError> {
    prop_assert!(facts.rating.is_none_or(|r| r <= 5), "{:?}", facts.rating);
    let mut sorted = facts.keywords.clone();
    sorted.sort();
    sorted.dedup();
    prop_assert_eq!(&sorted, &facts.keywords);
    for person in &facts.people {
        prop_assert!(!person.name.is_empty() && person.name.trim() == person.name);
        if let Some(area) = person.area {
            prop_assert!(
                area.iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{:?}",
                area
            );
        }
    }
    Ok(())
}

fn mutation() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        3 => (any::<usize>(), prop::sample::select(b"<>/=\"'&;:!?[] \0\xff".to_vec()))
            .prop_map(|(at, byte)| Edit::Insert { at, byte }),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<usize>(), 1usize..64, 1usize..50)
            .prop_map(|(at, len, times)| Edit::Repeat { at, len, times }),
    ]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Facts a sidecar is written from.
#[derive(Debug, Clone)]
struct Written {
    keywords: Vec<String>,
    description: Option<String>,
    rating: Option<u8>,
    people: Vec<(String, [f64; 4])>,
}

fn written() -> impl Strategy<Value = Written> {
    let word = "[A-Za-z0-9&<>\"'][A-Za-z0-9&<>\"' ]{0,10}[A-Za-z0-9&<>\"']|[A-Za-z0-9]";
    let unit = (0u32..=1000).prop_map(|v| f64::from(v) / 1000.0);
    (
        prop::collection::vec(word, 0..6),
        prop::option::of(word),
        prop::option::of(0u8..=5),
        prop::collection::vec(
            (word, [unit.clone(), unit.clone(), unit.clone(), unit]),
            0..4,
        ),
    )
        .prop_map(|(keywords, description, rating, people)| Written {
            keywords,
            description,
            rating,
            people,
        })
}

fn sidecar(facts: &Written) -> String {
    let rating = facts
        .rating
        .map(|r| format!(r#" xmp:Rating="{r}""#))
        .unwrap_or_default();
    let keywords: String = facts
        .keywords
        .iter()
        .map(|k| format!("<rdf:li>{}</rdf:li>", escape(k)))
        .collect();
    let description = facts
        .description
        .as_ref()
        .map(|d| {
            format!(
                r#"<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{}</rdf:li></rdf:Alt></dc:description>"#,
                escape(d)
            )
        })
        .unwrap_or_default();
    let regions: String = facts
        .people
        .iter()
        .map(|(name, [x, y, w, h])| {
            format!(
                r#"<rdf:li><rdf:Description mwg-rs:Name="{}" mwg-rs:Type="Face"><mwg-rs:Area stArea:x="{x}" stArea:y="{y}" stArea:w="{w}" stArea:h="{h}"/></rdf:Description></rdf:li>"#,
                escape(name)
            )
        })
        .collect();
    format!(
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"{rating}><dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>{description}<mwg-rs:Regions><mwg-rs:RegionList><rdf:Bag>{regions}</rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions></rdf:Description></rdf:RDF></x:xmpmeta>"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fuzz_xmp_arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(facts) = parse_xmp(&text) {
            check(&facts)?;
        }
    }

    #[test]
    fn fuzz_xmp_xml_soup_never_panics(text in r#"(<[a-zA-Z:]{1,12}( [a-zA-Z:]{1,8}="[^"<]{0,8}"){0,3}/?>|</[a-zA-Z:]{1,12}>|[^<]{0,12}|&[a-z#0-9]{0,5};?|<!\[CDATA\[[^\]]{0,8}\]\]>|<!--[^-]{0,8}-->|<\?[a-z]{0,6}\?>){0,40}"#) {
        if let Ok(facts) = parse_xmp(&text) {
            check(&facts)?;
        }
    }

    #[test]
    fn fuzz_xmp_mutated_sidecars_never_panic(
        sample in prop::sample::select(SAMPLES),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let bytes = edited(sample.as_bytes().to_vec(), &mutations);
        if let Ok(facts) = parse_xmp(&String::from_utf8_lossy(&bytes)) {
            check(&facts)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_xmp_written_facts_read_back(facts in written()) {
        let text = sidecar(&facts);
        let read = parse_xmp(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        check(&read)?;
        let mut keywords: Vec<String> = facts.keywords.clone();
        keywords.sort();
        keywords.dedup();
        prop_assert_eq!(&read.keywords, &keywords);
        prop_assert_eq!(&read.description, &facts.description);
        prop_assert_eq!(read.rating, facts.rating);
        prop_assert_eq!(read.people.len(), facts.people.len());
        for (person, (name, [x, y, w, h])) in read.people.iter().zip(&facts.people) {
            prop_assert_eq!(&person.name, name);
            let expected = [(x - w / 2.0).max(0.0), (y - h / 2.0).max(0.0), *w, *h];
            let area = person.area.expect("area");
            prop_assert!(
                area.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9),
                "{:?} vs {:?}", area, expected
            );
        }
    }
}

#[test]
fn the_samples_parse() {
    for sample in SAMPLES {
        let facts = parse_xmp(sample).unwrap_or_else(|e| panic!("{e}"));
        assert!(!facts.keywords.is_empty(), "{facts:?}");
    }
    // Numeric character references are characters; entities a DOCTYPE declares are never expanded
    // (no billion laughs), so they read as nothing.
    let darktable = parse_xmp(DARKTABLE).unwrap();
    assert_eq!(darktable.keywords, [r#"AA "quoted""#]);
}

/// Elements nested without end are refused before the reader's stack grows with them: a 3-byte
/// `<a>` per level would otherwise cost a heap string per level.
#[test]
fn fuzz_xmp_deep_nesting_is_refused() {
    let depth = 100_000;
    let text = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    let error = parse_xmp(&text).expect_err("a 100,000-deep document");
    assert!(error.contains("deep"), "{error}");
}
