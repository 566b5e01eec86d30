//! XMP sidecars (Lightroom, digiKam, darktable): keywords, description, rating, and MWG face regions
//! with person names.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::metadata::NamedRegion;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct XmpFacts {
    pub keywords: Vec<String>,
    pub description: Option<String>,
    pub rating: Option<u8>,
    pub people: Vec<NamedRegion>,
    /// Pets a sidecar names: MWG regions of type `Pet`, and hierarchical keywords under a pets
    /// parent (`Pets|Rex`, `Animals/Dogs/Rex`), which name a pet without saying where it is.
    pub pets: Vec<NamedRegion>,
}

/// Parents of hierarchical keywords whose leaf names a pet.
const PET_KEYWORD_PARENTS: &[&str] = &["pets", "pet", "dogs", "dog", "cats", "cat"];

/// Element names whose `rdf:li` children are keywords.
const KEYWORD_PARENTS: &[&str] = &["subject", "TagsList", "hierarchicalSubject"];

/// Real sidecars nest a dozen elements deep; deeper documents are refused before the element stack
/// (a string a level) grows with them.
pub const MAX_DEPTH: usize = 256;

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    name.rsplit(':').next().unwrap_or_default().to_string()
}

fn attribute(element: &BytesStart<'_>, wanted: &str) -> Option<String> {
    element.attributes().flatten().find_map(|a| {
        (local(a.key.as_ref()) == wanted)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map(|v| v.into_owned())
                    .ok()
            })
            .flatten()
    })
}

#[derive(Default)]
struct Region {
    name: Option<String>,
    kind: Option<String>,
    area: Option<[f64; 4]>,
}

pub fn parse_xmp(text: &str) -> Result<XmpFacts, String> {
    let mut reader = Reader::from_str(text);
    let mut facts = XmpFacts::default();
    let mut stack: Vec<String> = Vec::new();
    let mut region: Option<Region> = None;
    let mut text_buffer = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = local(e.name().as_ref());
                if let Some(rating) =
                    attribute(e, "Rating").and_then(|r| r.trim().parse::<i32>().ok())
                {
                    facts.rating = Some(rating.clamp(0, 5) as u8);
                }
                if let Some(description) = attribute(e, "description") {
                    facts.description.get_or_insert(description);
                }
                // An MWG region is an rdf:Description carrying mwg-rs:Name / mwg-rs:Type.
                if name == "Description" && stack.iter().any(|s| s == "RegionList") {
                    region = Some(Region {
                        name: attribute(e, "Name"),
                        kind: attribute(e, "Type"),
                        area: None,
                    });
                }
                if name == "Area" {
                    if let Some(r) = region.as_mut() {
                        r.area = area_of(e);
                    }
                }
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!(
                            "at byte {}: elements nested more than {MAX_DEPTH} deep",
                            reader.buffer_position()
                        ));
                    }
                    stack.push(name);
                    text_buffer.clear();
                } else if name == "Description" {
                    finish_region(&mut region, &mut facts);
                }
            }
            Event::Text(t) => text_buffer.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                // Character references (`&#233;`, `&#xE9;`) are characters; of named entities only
                // XML's own five are known. Entities a DOCTYPE declares are never expanded.
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text_buffer.push(c);
                    continue;
                }
                let entity = String::from_utf8_lossy(r.as_ref()).into_owned();
                text_buffer.push_str(match entity.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let value = text_buffer.trim().to_string();
                let parent = stack.iter().rev().nth(1).map(String::as_str);
                match name.as_str() {
                    "li" if parent.is_some_and(|p| KEYWORD_PARENTS.contains(&p))
                        && !value.is_empty() =>
                    {
                        // Hierarchical keywords ("Places|Hawaii|Waikiki") contribute their leaf.
                        let leaf = value
                            .rsplit(['|', '/'])
                            .next()
                            .unwrap_or(&value)
                            .trim()
                            .to_string();
                        let parent = value.split(['|', '/']).map(str::trim).rev().nth(1);
                        let under_pets = parent.is_some_and(|p| {
                            PET_KEYWORD_PARENTS.contains(&p.to_lowercase().as_str())
                        });
                        if under_pets && !leaf.is_empty() {
                            facts.pets.push(NamedRegion {
                                name: leaf.clone(),
                                area: None,
                            });
                        }
                        facts.keywords.push(leaf);
                    }
                    "li" if parent == Some("description") && !value.is_empty() => {
                        facts.description.get_or_insert(value);
                    }
                    "Rating" => {
                        facts.rating = value.parse::<i32>().ok().map(|r| r.clamp(0, 5) as u8)
                    }
                    "Name" => {
                        if let Some(r) = region.as_mut() {
                            r.name = Some(value);
                        }
                    }
                    "Type" => {
                        if let Some(r) = region.as_mut() {
                            r.kind = Some(value);
                        }
                    }
                    "Description" => finish_region(&mut region, &mut facts),
                    _ => {}
                }
                text_buffer.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    facts.keywords.sort();
    facts.keywords.dedup();
    facts
        .pets
        .dedup_by(|a, b| a.name == b.name && a.area == b.area);
    Ok(facts)
}

/// MWG areas give the centre (x, y) and size (w, h), normalised; we store left, top, width, height.
fn area_of(e: &BytesStart<'_>) -> Option<[f64; 4]> {
    let get = |n: &str| attribute(e, n).and_then(|v| v.trim().parse::<f64>().ok());
    let (x, y, w, h) = (get("x")?, get("y")?, get("w")?, get("h")?);
    let valid = [x, y, w, h]
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v));
    valid.then(|| [(x - w / 2.0).max(0.0), (y - h / 2.0).max(0.0), w, h])
}

fn finish_region(region: &mut Option<Region>, facts: &mut XmpFacts) {
    if let Some(r) = region.take() {
        let is_face = r.kind.as_deref().is_none_or(|k| k == "Face");
        let is_pet = r.kind.as_deref() == Some("Pet");
        if let Some(name) = r.name.filter(|n| !n.trim().is_empty()) {
            let region = NamedRegion {
                name: name.trim().to_string(),
                area: r.area,
            };
            if is_face {
                facts.people.push(region);
            } else if is_pet {
                facts.pets.push(region);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn reads_keywords_rating_description_and_face_regions() {
        let facts = parse_xmp(LIGHTROOM).unwrap();
        assert_eq!(facts.keywords, ["Rex & me", "Waikiki", "beach"]);
        assert_eq!(facts.rating, Some(4));
        assert_eq!(facts.description.as_deref(), Some("Evening swim"));
        assert_eq!(facts.people.len(), 1, "{:?}", facts.people);
        assert_eq!(facts.pets.len(), 1, "{:?}", facts.pets);
        assert_eq!(facts.pets[0].name, "Rex");
        assert_eq!(facts.people[0].name, "Anna");
        let [left, top, w, h] = facts.people[0].area.unwrap();
        assert!((left - 0.4).abs() < 1e-9 && (top - 0.25).abs() < 1e-9 && w == 0.2 && h == 0.3);
        assert!(parse_xmp("<x:xmpmeta><unclosed").is_err());
    }
}
