//! The guest listing's fingerprint: what an idle daemon pass compares to decide that
//! nothing changed (see [`crate::daemon`]).
//!
//! An idle pass reads `GET /cluster/resources?type=vm` (some 300 kB at 1,000 guests) every
//! interval just to hash a few fields of it. Building a [`ClusterResource`] per guest for
//! that, every field an owned `String` or a `serde_json::Value`, was most of the pass's
//! CPU. So the fingerprint is taken from the answer's text: each guest's covered fields
//! (`FIELDS`) are read in place as borrowed `Scalar`s and hashed at once, the others
//! skipped unread; nothing of a guest is kept but its hash. A full pass hashes the same
//! text it parses its listing from, so its fingerprint and an idle pass's are the same
//! function of the answer.

use crate::pve::client::envelope_data;
use crate::pve::{ClusterResource, PveClient, PveError, ResourceType};
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// What the fingerprint covers of a guest: what a change would alter (vmid, node, name,
/// power state, tags, lock, sizes, pool), leaving out what moves on its own (CPU and
/// memory use, uptime). The position of a name is part of its field's hash.
#[cfg_attr(not(test), allow(dead_code))] // `field` is its lookup; the tests check they agree.
const FIELDS: [&str; 12] = [
    "vmid", "type", "node", "name", "status", "template", "tags", "lock", "maxmem", "maxdisk",
    "maxcpu", "pool",
];

/// The position of `key` in [`FIELDS`]. A `match` rather than a search of the array: it
/// runs for every key of every guest (some 20,000 an idle pass at 1,000 guests), and
/// compiled to a switch on the length it rejects most keys without comparing bytes.
fn field(key: &str) -> Option<usize> {
    Some(match key {
        "vmid" => 0,
        "type" => 1,
        "node" => 2,
        "name" => 3,
        "status" => 4,
        "template" => 5,
        "tags" => 6,
        "lock" => 7,
        "maxmem" => 8,
        "maxdisk" => 9,
        "maxcpu" => 10,
        "pool" => 11,
        _ => return None,
    })
}

/// A JSON value of the listing as the fingerprint sees it. PVE (Perl underneath) may
/// send a number as a string or a flag as `1` or `true`; those read the same here, as
/// they do for [`crate::pve::de`]. A string is borrowed from the answer unless JSON
/// escapes in it forced a copy. Arrays and objects (which the fields never hold) are
/// [`Scalar::Other`]: their content is not compared.
#[derive(Debug)]
enum Scalar<'a> {
    Int(u64),
    Float(u64),
    Text(Cow<'a, str>),
    Other,
}

impl<'a> Scalar<'a> {
    /// A string, as the number it spells if it is one.
    fn text(s: Cow<'a, str>) -> Self {
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            if let Ok(n) = s.parse() {
                return Scalar::Int(n);
            }
        }
        Scalar::Text(s)
    }

    /// A hash of the value as field number `field`.
    fn hash(&self, field: usize) -> u64 {
        let (kind, value) = match self {
            Scalar::Int(n) => (1, *n),
            Scalar::Float(bits) => (2, *bits),
            Scalar::Text(s) => (3, fnv1a(s.as_bytes())),
            Scalar::Other => (4, 0),
        };
        mix(mix(value) ^ ((field as u64) << 8 | kind))
    }
}

/// FNV-1a over `bytes`: short strings (names, node names, tags) hashed in a few cycles.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<&'a str>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Int(v))
            }
            /// Only a negative number: none of the fields holds one.
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Float((v as f64).to_bits()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Float(v.to_bits()))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::text(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// A key of a guest's object: the number of the field in [`FIELDS`], if covered.
struct Field(Option<usize>);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(Field(field(v)))
            }
        }
        d.deserialize_str(FieldVisitor)
    }
}

/// One guest, hashed as it is read: the sum of its covered fields' hashes, so the order
/// of the keys does not matter and nothing of the guest is kept.
struct GuestHash(u64);

impl<'de> Deserialize<'de> for GuestHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GuestVisitor;
        impl<'de> Visitor<'de> for GuestVisitor {
            type Value = GuestHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a guest")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GuestHash, A::Error> {
                let mut sum = 0u64;
                while let Some(Field(field)) = map.next_key()? {
                    match field {
                        Some(i) => sum = sum.wrapping_add(map.next_value::<Scalar>()?.hash(i)),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(GuestHash(sum))
            }
        }
        d.deserialize_map(GuestVisitor)
    }
}

/// A listing's guests combined: the sum of each guest's hash, mixed first so that two
/// guests trading a value (one's power state for the other's) still change the sum. A sum
/// does not depend on the guests' order, so no list of their hashes is kept and sorted.
struct GuestsHash(u64);

impl<'de> Deserialize<'de> for GuestsHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GuestsVisitor;
        impl<'de> Visitor<'de> for GuestsVisitor {
            type Value = GuestsHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of guests")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GuestsHash, A::Error> {
                let (mut sum, mut count) = (0u64, 0u64);
                while let Some(GuestHash(h)) = seq.next_element()? {
                    sum = sum.wrapping_add(mix(h));
                    count += 1;
                }
                Ok(GuestsHash(mix(sum ^ mix(count))))
            }
        }
        d.deserialize_seq(GuestsVisitor)
    }
}

/// The fingerprint of a `/cluster/resources` answer's body: equal fingerprints, nothing
/// [`FIELDS`] covers changed. The order of the guests is not a change.
fn body_fingerprint(body: &[u8]) -> serde_json::Result<u64> {
    // One UTF-8 check of the whole text instead of one per string read.
    let text = std::str::from_utf8(body).map_err(serde_json::Error::custom)?;
    Ok(serde_json::from_str::<Listing>(text)?.data.0)
}

/// PVE's envelope around the rows.
#[derive(Deserialize)]
struct Listing {
    data: GuestsHash,
}

/// The guests (`/cluster/resources?type=vm`) with the answer's `body_fingerprint`.
pub async fn fetch(client: &PveClient) -> Result<(Vec<ClusterResource>, u64), PveError> {
    client
        .cluster_resources_with(Some(ResourceType::Vm), |body| {
            Ok((envelope_data(body)?, body_fingerprint(body)?))
        })
        .await
}

/// Only the `body_fingerprint` of the guests now: what an idle pass needs.
pub async fn fetch_fingerprint(client: &PveClient) -> Result<u64, PveError> {
    client
        .cluster_resources_with(Some(ResourceType::Vm), body_fingerprint)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two guests as PVE lists them, with fields the fingerprint ignores and escapes in a
    /// string (which the in-place read has to copy).
    const LISTING: &str = r#"{"data":[
        {"id":"qemu/101","type":"qemu","vmid":101,"node":"pve2","name":"b\u00e9","status":"stopped",
         "template":0,"maxmem":2147483648,"maxdisk":1073741824,"maxcpu":2,"cpu":0,"uptime":0},
        {"id":"qemu/100","type":"qemu","vmid":100,"node":"pve1","name":"a","status":"running",
         "template":0,"tags":"pve-gitops;web","lock":"backup","pool":"p","maxmem":2147483648,
         "maxcpu":2,"cpu":0.25,"mem":123456,"uptime":42,"diskread":7,"netin":9}]}"#;

    fn fingerprint(json: &str) -> u64 {
        body_fingerprint(json.as_bytes()).expect("listing")
    }

    #[test]
    fn usage_and_unknown_fields_are_not_changes() {
        let busy = LISTING
            .replace(r#""cpu":0.25"#, r#""cpu":0.75"#)
            .replace(r#""uptime":42"#, r#""uptime":4242"#)
            .replace(r#""mem":123456"#, r#""mem":654321"#)
            .replace(r#""netin":9"#, r#""netin":9,"new":{"a":[1,null]}"#);
        assert_eq!(fingerprint(&busy), fingerprint(LISTING));
    }

    #[test]
    fn how_pve_spells_a_value_is_not_a_change() {
        let spelled = LISTING
            .replace(r#""vmid":101"#, r#""vmid":"101""#)
            .replace(r#""maxcpu":2,"cpu":0,"#, r#""maxcpu":"2","cpu":0,"#)
            .replace(r#""template":0,"tags""#, r#""template":false,"tags""#)
            .replace(r#""name":"b\u00e9""#, r#""name":"bé""#);
        assert_ne!(spelled, LISTING);
        assert_eq!(fingerprint(&spelled), fingerprint(LISTING));
    }

    #[test]
    fn the_order_of_the_guests_is_not_a_change() {
        let rows: serde_json::Value = serde_json::from_str(LISTING).unwrap();
        let mut guests = rows["data"].as_array().unwrap().clone();
        guests.reverse();
        let reversed = serde_json::json!({ "data": guests }).to_string();
        assert_eq!(fingerprint(&reversed), fingerprint(LISTING));
    }

    #[test]
    fn power_state_tags_lock_placement_and_existence_are_changes() {
        let base = fingerprint(LISTING);
        for changed in [
            LISTING.replace(r#""status":"stopped""#, r#""status":"running""#),
            LISTING.replace("pve-gitops;web", "pve-gitops"),
            LISTING.replace(r#""lock":"backup","#, ""),
            LISTING.replace(r#""node":"pve2""#, r#""node":"pve3""#),
            LISTING.replace(r#""maxcpu":2,"cpu":0,"#, r#""maxcpu":4,"cpu":0,"#),
            LISTING.replace(r#""name":"b\u00e9""#, r#""name":"b""#),
            LISTING.replace(r#""vmid":101"#, r#""vmid":102"#),
        ] {
            assert_ne!(fingerprint(&changed), base, "{changed}");
        }
        let one: serde_json::Value = serde_json::from_str(LISTING).unwrap();
        let first = serde_json::json!({ "data": [one["data"][0]] }).to_string();
        assert_ne!(fingerprint(&first), base, "a guest gone");
    }

    #[test]
    fn guests_trading_values_is_a_change() {
        let base = fingerprint(LISTING);
        let traded = LISTING
            .replace(r#""status":"stopped""#, r#""status":"RUNNING""#)
            .replace(r#""status":"running""#, r#""status":"stopped""#)
            .replace(r#""status":"RUNNING""#, r#""status":"running""#);
        assert_ne!(traded, LISTING);
        assert_ne!(fingerprint(&traded), base, "power states traded");
        let moved = LISTING
            .replace(r#""node":"pve2""#, r#""node":"pveX""#)
            .replace(r#""node":"pve1""#, r#""node":"pve2""#)
            .replace(r#""node":"pveX""#, r#""node":"pve1""#);
        assert_ne!(fingerprint(&moved), base, "nodes traded");
    }

    #[test]
    fn every_covered_field_is_found_at_its_place() {
        for (i, name) in FIELDS.iter().enumerate() {
            assert_eq!(field(name), Some(i), "{name}");
        }
        for other in ["id", "cpu", "mem", "uptime", "Vmid", "vmid ", "maxmemx", ""] {
            assert_eq!(field(other), None, "{other:?}");
        }
    }

    #[test]
    fn what_is_not_a_listing_is_an_error() {
        for text in [
            &b"{\"data\": {}}"[..],
            b"{\"data\": [\"\xff\"]}",
            b"{\"data\": [{\"name\": \"\xff\"}]}",
            b"{\"data\": [{\"name\" \"a\"}]}",
            b"{\"data\": [{\"name\": \"a\",}]}",
            b"{\"data\": []} []",
            b"{\"errors\": {}}",
            b"[]",
            b"",
        ] {
            assert!(
                body_fingerprint(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_cut_answer_is_an_error_wherever_it_was_cut() {
        let text = LISTING.as_bytes();
        for end in 0..text.len() - 1 {
            if let Ok(fp) = body_fingerprint(&text[..end]) {
                panic!("{:?} read as {fp:x}", String::from_utf8_lossy(&text[..end]));
            }
        }
    }

    /// The fingerprint as serde_json's document model gives it: what the reading in place
    /// (visitors, borrowed strings, a sum per guest) must agree with on any listing.
    fn reference(text: &str) -> u64 {
        use serde_json::Value;
        let listing: Value = serde_json::from_str(text).expect("JSON");
        let guests = listing["data"].as_array().expect("guests");
        let mut sum = 0u64;
        for guest in guests {
            let mut g = 0u64;
            for (key, value) in guest.as_object().expect("a guest") {
                let Some(i) = field(key) else {
                    continue;
                };
                let scalar = match value {
                    Value::Bool(b) => Scalar::Int((*b).into()),
                    Value::Number(n) => match n.as_u64() {
                        Some(n) => Scalar::Int(n),
                        None => Scalar::Float(n.as_f64().expect("a number").to_bits()),
                    },
                    Value::String(s) => Scalar::text(s.as_str().into()),
                    _ => Scalar::Other,
                };
                g = g.wrapping_add(scalar.hash(i));
            }
            sum = sum.wrapping_add(mix(g));
        }
        mix(sum ^ mix(guests.len() as u64))
    }

    /// A seeded generator for the tests (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(self.0) % n
        }
        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.below(of.len() as u64) as usize]
        }
    }

    /// A random listing: covered and other keys, every kind of value, escapes in keys and
    /// strings, and the whitespace of compact or pretty JSON.
    fn random_listing(rng: &mut Rng) -> String {
        let keys = [
            "vmid",
            "type",
            "node",
            "name",
            "status",
            "template",
            "tags",
            "lock",
            "maxmem",
            "maxdisk",
            "maxcpu",
            "pool",
            "cpu",
            "uptime",
            "id",
            "n\\u0061me",
            "st\\\"x",
        ];
        let values = [
            "0",
            "1",
            "100",
            "18446744073709551615",
            "18446744073709551616",
            "-7",
            "0.25",
            "1e3",
            "-2.5E-3",
            "true",
            "false",
            "null",
            "\"\"",
            "\"pve1\"",
            "\"101\"",
            "\"1x\"",
            "\"b\\u00e9\"",
            "\"a\\\"b\\\\\"",
            "\"h\u{e9}\"",
            "[]",
            "[1, \"]\", {\"a\": null}]",
            "{\"k\": [\"}\"]}",
        ];
        let space = rng.pick(&["", " ", "\n  "]);
        let guests: Vec<String> = (0..rng.below(6))
            .map(|_| {
                // Distinct keys (as decoded): a document model keeps one of twins.
                let mut seen = std::collections::HashSet::new();
                let members: Vec<String> = (0..rng.below(8))
                    .map(|_| (rng.pick(&keys), rng.pick(&values)))
                    .filter(|(k, _)| seen.insert(k.replace("\\u0061", "a")))
                    .map(|(k, v)| format!("{space}\"{k}\"{space}:{space}{v}"))
                    .collect();
                format!("{{{}{space}}}", members.join(","))
            })
            .collect();
        format!(
            "{{\"other\": {{\"data\": 1}},{space}\"data\":{space}[{}]}}",
            guests.join(&format!(",{space}"))
        )
    }

    #[test]
    fn the_fingerprint_is_the_one_serde_json_reads() {
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let text = random_listing(&mut rng);
            assert_eq!(fingerprint(&text), reference(&text), "{text}");
        }
        assert_eq!(fingerprint(LISTING), reference(LISTING));
    }
}
