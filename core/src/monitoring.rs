//! Monitoring: structured case records of violations against lawyers and
//! defenders, kept in a confidential space (PROTOCOL §9.7), the counts a
//! member's device computes from them, and the aggregates a space manager
//! may publish for the public map (PROTOCOL §15.4).
//!
//! A space's records live in one Automerge document, its *register*, on a
//! stream derived from the space id ([`stream`]), sealed and logged like a
//! filing (co-edited, with history):
//!
//! ```text
//! root: { "<record id>": { date: str, country: str, region: str,
//!                          types: List<str>, profession: str, gender: str,
//!                          status: str, outcome: str, sources: List<str>,
//!                          notes: Text, created: Timestamp, edited?: Timestamp },
//!         "type:<code>": str (a violation type a space manager added: its label) }
//! ```
//! Every record and every added type is a key of the root, which always
//! exists: two members writing at once never create two competing maps.
//! Who created a record is the user bound to the actor that wrote its
//! `created`; who last edited it, the one that wrote its `edited`.
//!
//! Nothing here is sent anywhere by itself. An aggregate ([`aggregate`])
//! holds counts only, never a record: each cell counts the records that
//! share its values, and a cell of fewer than `k` records is left out
//! (suppressed), so that nobody can be singled out by a small count.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use crate::document::filing::Author;
use crate::document::{Authors, DocumentError};
use crate::identity::{DeviceCertificate, Statement, verify_statement};
use crate::{SpaceId, StreamId};

/// The register's stream in a space.
pub fn stream(space: SpaceId) -> StreamId {
    let h = blake3::derive_key("amicus monitoring stream v1", &space.0);
    StreamId(h[..16].try_into().expect("16 bytes"))
}

/// The violation types every register knows, by code (a space manager adds
/// others: [`add_type`]).
pub const TYPES: [&str; 12] = [
    "threat",
    "judicial_harassment",
    "arrest",
    "detention",
    "assault",
    "disbarment",
    "killing",
    "surveillance",
    "disappearance",
    "travel_ban",
    "smear_campaign",
    "other",
];

/// The professions of the people targeted, by code.
pub const PROFESSIONS: [&str; 6] = [
    "lawyer",
    "defender",
    "journalist",
    "judge",
    "trainee",
    "other",
];

/// Genders, by code (`undisclosed` when the person did not say or it is
/// not known).
pub const GENDERS: [&str; 4] = ["woman", "man", "non_binary", "undisclosed"];

/// A case's status.
pub const STATUSES: [&str; 3] = ["open", "ongoing", "closed"];

/// The most violation types one record names.
pub const MAX_TYPES: usize = 10;
/// The most library entries one record cites as sources.
pub const MAX_SOURCES: usize = 20;
/// The most characters of a record's notes.
pub const MAX_NOTES_CHARS: usize = 20_000;
/// The most characters of a closed case's outcome.
pub const MAX_OUTCOME_CHARS: usize = 500;
/// The most violation types a space manager adds to a register.
pub const MAX_ADDED_TYPES: usize = 100;
/// The suppression threshold of an aggregate when none is chosen.
pub const DEFAULT_K: u32 = 5;
/// The most cells one aggregate publishes.
pub const MAX_CELLS: usize = 10_000;

/// Why a record, a type or an aggregate is refused. Each has a stable
/// code ([`RecordError::code`]) the interfaces translate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The date is not `YYYY`, `YYYY-MM` or `YYYY-MM-DD` of a real day.
    #[error(
        "`{0}` is not a date: write YYYY-MM-DD (or YYYY-MM, or YYYY when only the year is known)"
    )]
    BadDate(String),
    /// The date is after today (by the writer's device clock).
    #[error("{0} is in the future: a record describes what has happened")]
    FutureDate(String),
    /// The country is not an ISO 3166-1 alpha-2 code.
    #[error("`{0}` is not an ISO 3166-1 country code (two letters, such as FR or TN)")]
    UnknownCountry(String),
    /// The region is not an ISO 3166-2 code of the record's country.
    #[error(
        "`{0}` is not an ISO 3166-2 region of the record's country (its code, a hyphen and up to three letters or digits, such as FR-75 or TN-11)"
    )]
    BadRegion(String),
    /// A field holds a value outside its list (the field, the value).
    #[error("`{1}` is not a value of `{0}`")]
    UnknownValue(&'static str, String),
    /// A record names no violation type, or too many.
    #[error("a record names 1 to {MAX_TYPES} types of violation")]
    Types,
    /// A field is over its size limit (the field, its limit).
    #[error("`{0}` holds at most {1}")]
    TooLong(&'static str, String),
    /// A source is not a document or file the space's library lists.
    #[error("the library lists no entry {0}: cite documents and files of this space")]
    NoSource(String),
    /// No record has this id.
    #[error("this register has no record {0}")]
    NoRecord(String),
    /// A type code is not 2 to 40 lowercase letters, digits or `_`.
    #[error("`{0}` is not a type code: 2 to 40 lowercase letters, digits or _")]
    BadCode(String),
    /// The register already knows this type.
    #[error("the register already has the type {0}")]
    TypeExists(String),
    /// `k` is below 2 or above 1,000.
    #[error("k is between 2 and 1000 (it was {0})")]
    BadK(u32),
    /// An aggregate counts by country (a region only with its country),
    /// each dimension once.
    #[error("an aggregate counts by country (and by region only with it), each dimension once")]
    Dimensions,
    /// Every cell of the aggregate has fewer than `k` records.
    #[error(
        "every count is under {0}: nothing would be published (choose fewer dimensions, or a smaller k if it still protects the people concerned)"
    )]
    AllSuppressed(u32),
    /// More cells than [`MAX_CELLS`].
    #[error("an aggregate publishes at most {MAX_CELLS} cells")]
    TooManyCells,
}

impl RecordError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadDate(_) => "bad_date",
            Self::FutureDate(_) => "future_date",
            Self::UnknownCountry(_) => "unknown_country",
            Self::BadRegion(_) => "bad_region",
            Self::UnknownValue(..) => "unknown_value",
            Self::Types => "types",
            Self::TooLong(..) => "too_long",
            Self::NoSource(_) => "no_source",
            Self::NoRecord(_) => "no_record",
            Self::BadCode(_) => "bad_code",
            Self::TypeExists(_) => "type_exists",
            Self::BadK(_) => "bad_k",
            Self::Dimensions => "dimensions",
            Self::AllSuppressed(_) => "all_suppressed",
            Self::TooManyCells => "too_many_cells",
        }
    }
}

fn am<E: core::fmt::Display>(e: E) -> DocumentError {
    DocumentError::Automerge(e.to_string())
}

/// What a member writes in a record: every field of the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// `YYYY-MM-DD`, or `YYYY-MM`, or `YYYY`.
    pub date: String,
    /// ISO 3166-1 alpha-2 (upper case).
    pub country: String,
    /// ISO 3166-2 code of a region of `country`, or empty.
    #[serde(default)]
    pub region: String,
    /// Violation types (codes), 1 to [`MAX_TYPES`].
    pub types: Vec<String>,
    /// A code of [`PROFESSIONS`].
    pub profession: String,
    /// A code of [`GENDERS`].
    pub gender: String,
    /// A code of [`STATUSES`].
    pub status: String,
    /// How a closed case ended (free text), or empty.
    #[serde(default)]
    pub outcome: String,
    /// Library entry ids (documents, files) the record relies on.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub notes: String,
}

/// A record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its fields.
    pub fields: Fields,
    /// Who created it.
    pub by: Author,
    /// Who last edited it (its creator if no one has).
    pub edited_by: Author,
    /// When it was created, by the creator's device clock.
    pub created_ms: Option<i64>,
    /// When it was last edited, by the editor's device clock.
    pub edited_ms: Option<i64>,
}

/// A register as read: its records (oldest first) and the violation
/// types it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Register {
    /// The records, in the order they were created (then by id).
    pub records: Vec<Record>,
    /// Types a space manager added: code and label.
    pub added_types: BTreeMap<String, String>,
}

impl Register {
    /// Every violation type this register accepts.
    pub fn types(&self) -> Vec<String> {
        TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .chain(self.added_types.keys().cloned())
            .collect()
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Checks a date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) that must not be after
/// the day after the one `now_ms` falls on in UTC (so that the writer's
/// own today is accepted in every time zone, up to UTC+14): a partial date
/// must have begun.
pub fn check_date(date: &str, now_ms: i64) -> Result<(), RecordError> {
    let bad = || RecordError::BadDate(date.chars().take(20).collect());
    let parts: Vec<&str> = date.split('-').collect();
    let num = |s: &str, len: usize| -> Result<u32, RecordError> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (y, m, d) = match parts.as_slice() {
        [y] => (num(y, 4)?, 1, 1),
        [y, m] => (num(y, 4)?, num(m, 2)?, 1),
        [y, m, d] => (num(y, 4)?, num(m, 2)?, num(d, 2)?),
        _ => return Err(bad()),
    };
    let y = i64::from(y);
    if y < 1900 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    if days_from_civil(y, m, d) > now_ms.div_euclid(86_400_000) + 1 {
        return Err(RecordError::FutureDate(date.to_owned()));
    }
    Ok(())
}

/// The year of a date as written (its first four digits).
fn year(date: &str) -> String {
    date.get(..4).unwrap_or_default().to_owned()
}

/// Checks a country code: ISO 3166-1 alpha-2, upper case.
pub fn check_country(code: &str) -> Result<(), RecordError> {
    let known = code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && isocountry::CountryCode::for_alpha2(code).is_ok();
    if known {
        Ok(())
    } else {
        Err(RecordError::UnknownCountry(code.chars().take(10).collect()))
    }
}

/// Every ISO 3166-1 alpha-2 code [`check_country`] accepts.
pub fn countries() -> impl Iterator<Item = &'static str> {
    isocountry::CountryCode::iter().map(|c| c.alpha2())
}

/// Checks a region code against its country: `CC-X`, `CC-XX` or `CC-XXX`
/// (upper-case letters and digits), `CC` the country. The code's form is
/// checked, not whether ISO lists it (the list changes; this one is kept
/// out of the client's module).
pub fn check_region(region: &str, country: &str) -> Result<(), RecordError> {
    if region.is_empty() {
        return Ok(());
    }
    let well_formed = region.len() <= 6
        && region.split_once('-').is_some_and(|(c, rest)| {
            c == country
                && (1..=3).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        });
    if well_formed {
        Ok(())
    } else {
        Err(RecordError::BadRegion(region.chars().take(12).collect()))
    }
}

fn check_code(field: &'static str, value: &str, list: &[&str]) -> Result<(), RecordError> {
    if list.contains(&value) {
        Ok(())
    } else {
        Err(RecordError::UnknownValue(
            field,
            value.chars().take(40).collect(),
        ))
    }
}

/// The fields as they are stored: trimmed, and checked against the
/// register's `types`, the library's `entries` (for sources) and the
/// date of `now_ms`.
pub fn checked(
    fields: &Fields,
    types: &[String],
    entries: &BTreeSet<String>,
    now_ms: i64,
) -> Result<Fields, RecordError> {
    let f = Fields {
        date: fields.date.trim().to_owned(),
        country: fields.country.trim().to_owned(),
        region: fields.region.trim().to_owned(),
        types: {
            let mut seen = Vec::new();
            for t in &fields.types {
                let t = t.trim().to_owned();
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
            seen
        },
        profession: fields.profession.trim().to_owned(),
        gender: fields.gender.trim().to_owned(),
        status: fields.status.trim().to_owned(),
        outcome: fields.outcome.trim().to_owned(),
        sources: fields.sources.iter().map(|s| s.trim().to_owned()).collect(),
        notes: fields.notes.trim().to_owned(),
    };
    check_date(&f.date, now_ms)?;
    check_country(&f.country)?;
    check_region(&f.region, &f.country)?;
    if f.types.is_empty() || f.types.len() > MAX_TYPES {
        return Err(RecordError::Types);
    }
    for t in &f.types {
        if !types.contains(t) {
            return Err(RecordError::UnknownValue(
                "types",
                t.chars().take(40).collect(),
            ));
        }
    }
    check_code("profession", &f.profession, &PROFESSIONS)?;
    check_code("gender", &f.gender, &GENDERS)?;
    check_code("status", &f.status, &STATUSES)?;
    if f.outcome.chars().count() > MAX_OUTCOME_CHARS {
        return Err(RecordError::TooLong(
            "outcome",
            format!("{MAX_OUTCOME_CHARS} characters"),
        ));
    }
    if f.notes.chars().count() > MAX_NOTES_CHARS {
        return Err(RecordError::TooLong(
            "notes",
            format!("{MAX_NOTES_CHARS} characters"),
        ));
    }
    if f.sources.len() > MAX_SOURCES {
        return Err(RecordError::TooLong(
            "sources",
            format!("{MAX_SOURCES} entries"),
        ));
    }
    for s in &f.sources {
        if !entries.contains(s) {
            return Err(RecordError::NoSource(s.chars().take(40).collect()));
        }
    }
    Ok(f)
}

fn string(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> String {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => s.as_str().unwrap_or_default().to_owned(),
        Ok(Some((Value::Object(ObjType::Text), id))) => doc.text(&id).unwrap_or_default(),
        _ => String::new(),
    }
}

fn strings(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Ok(Some((Value::Object(ObjType::List), list))) = doc.get(obj, key) {
        for j in 0..doc.length(&list) {
            if let Ok(Some((Value::Scalar(v), _))) = doc.get(&list, j)
                && let Some(s) = v.as_str()
                && !out.iter().any(|o| o == s)
            {
                out.push(s.to_owned());
            }
        }
    }
    out
}

fn timestamp(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            automerge::ScalarValue::Timestamp(t) | automerge::ScalarValue::Int(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

fn put_list(
    doc: &mut AutoCommit,
    obj: &automerge::ObjId,
    key: &str,
    values: &[String],
) -> Result<(), DocumentError> {
    let list = match doc.get(obj, key).map_err(am)? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => doc.put_object(obj, key, ObjType::List).map_err(am)?,
    };
    let len = doc.length(&list);
    for i in (0..len).rev() {
        doc.delete(&list, i).map_err(am)?;
    }
    for (i, v) in values.iter().enumerate() {
        doc.insert(&list, i, v.as_str()).map_err(am)?;
    }
    Ok(())
}

fn record_obj(doc: &AutoCommit, id: &str) -> Option<automerge::ObjId> {
    if id.starts_with("type:") {
        return None;
    }
    match doc.get(ROOT, id) {
        Ok(Some((Value::Object(ObjType::Map), obj))) => Some(obj),
        _ => None,
    }
}

/// Writes the fields of `f` that differ from `before` (what the writer's
/// form was opened from; `None` for a new record: every field), so that a
/// member saving a form does not write back over a field another member
/// changed meanwhile.
fn write_fields(
    doc: &mut AutoCommit,
    obj: &automerge::ObjId,
    before: Option<&Fields>,
    f: &Fields,
) -> Result<(), DocumentError> {
    let was = before.cloned().unwrap_or_default();
    let new = before.is_none();
    for (key, value, old) in [
        ("date", &f.date, &was.date),
        ("country", &f.country, &was.country),
        ("region", &f.region, &was.region),
        ("profession", &f.profession, &was.profession),
        ("gender", &f.gender, &was.gender),
        ("status", &f.status, &was.status),
        ("outcome", &f.outcome, &was.outcome),
    ] {
        if new || value != old {
            doc.put(obj, key, value.as_str()).map_err(am)?;
        }
    }
    for (key, values, old) in [
        ("types", &f.types, &was.types),
        ("sources", &f.sources, &was.sources),
    ] {
        if new || values != old {
            put_list(doc, obj, key, values)?;
        }
    }
    if new || f.notes != was.notes {
        let notes = match doc.get(obj, "notes").map_err(am)? {
            Some((Value::Object(ObjType::Text), id)) => id,
            _ => doc.put_object(obj, "notes", ObjType::Text).map_err(am)?,
        };
        doc.update_text(&notes, &f.notes).map_err(am)?;
    }
    Ok(())
}

/// Writes a new record `id` with fields already [`checked`].
pub fn create(
    doc: &mut AutoCommit,
    id: &str,
    fields: &Fields,
    at_ms: i64,
) -> Result<(), DocumentError> {
    let obj = doc.put_object(ROOT, id, ObjType::Map).map_err(am)?;
    write_fields(doc, &obj, None, fields)?;
    doc.put(&obj, "created", automerge::ScalarValue::Timestamp(at_ms))
        .map_err(am)
}

/// Takes a record out of the register. Its fields stay in the register's
/// history, as an entry removed from the library does (PROTOCOL §9.4).
pub fn remove(doc: &mut AutoCommit, id: &str) -> Result<(), DocumentError> {
    if record_obj(doc, id).is_none() {
        return Err(RecordError::NoRecord(id.chars().take(40).collect()).into());
    }
    doc.delete(ROOT, id).map_err(am)
}

/// Writes the fields (already [`checked`]) of a record that differ from
/// `before`, what the writer's form was opened from.
pub fn edit(
    doc: &mut AutoCommit,
    id: &str,
    before: &Fields,
    fields: &Fields,
    at_ms: i64,
) -> Result<(), DocumentError> {
    let obj = record_obj(doc, id).ok_or_else(|| RecordError::NoRecord(id.to_owned()))?;
    write_fields(doc, &obj, Some(before), fields)?;
    doc.put(&obj, "edited", automerge::ScalarValue::Timestamp(at_ms))
        .map_err(am)
}

/// Adds a violation type (`code`, shown as `label`) to the register.
/// `register` is the register as read ([`read`]): a code it already knows
/// (built in, or added by a space manager) is refused, and so is a type
/// past [`MAX_ADDED_TYPES`]; a key written by someone who is not a manager
/// is not a type, and is written over.
pub fn add_type(
    doc: &mut AutoCommit,
    register: &Register,
    code: &str,
    label: &str,
) -> Result<(), DocumentError> {
    if !is_code(code) {
        return Err(RecordError::BadCode(code.chars().take(40).collect()).into());
    }
    if register.types().iter().any(|t| t == code) {
        return Err(RecordError::TypeExists(code.to_owned()).into());
    }
    if register.added_types.len() >= MAX_ADDED_TYPES {
        return Err(RecordError::TooLong(
            "the register's added types",
            format!("{MAX_ADDED_TYPES}"),
        )
        .into());
    }
    let label = crate::document::checked_name(label)?;
    doc.put(ROOT, format!("type:{code}"), label).map_err(am)
}

/// A type's code: 2 to 40 of `a-z`, `0-9`, `_`.
fn is_code(code: &str) -> bool {
    (2..=40).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads the register. A type counts as added only if the user bound to
/// the actor that wrote it passes `manager` (is a space manager now).
pub fn read(doc: &AutoCommit, authors: &Authors, manager: impl Fn(&str) -> bool) -> Register {
    let mut register = Register::default();
    for key in doc.keys(ROOT).collect::<Vec<_>>() {
        if let Some(code) = key.strip_prefix("type:") {
            if let Ok(Some((Value::Scalar(s), automerge::ObjId::Id(_, actor, _)))) =
                doc.get(ROOT, &key)
                && authors.of(&actor).is_some_and(&manager)
                && let Some(label) = s.as_str()
            {
                register
                    .added_types
                    .insert(code.to_owned(), label.to_owned());
            }
            continue;
        }
        let Some(obj) = record_obj(doc, &key) else {
            continue;
        };
        let fields = Fields {
            date: string(doc, &obj, "date"),
            country: string(doc, &obj, "country"),
            region: string(doc, &obj, "region"),
            types: strings(doc, &obj, "types"),
            profession: string(doc, &obj, "profession"),
            gender: string(doc, &obj, "gender"),
            status: string(doc, &obj, "status"),
            outcome: string(doc, &obj, "outcome"),
            sources: strings(doc, &obj, "sources"),
            notes: string(doc, &obj, "notes"),
        };
        let by = crate::document::filing::author(doc, &obj, "created", "", authors);
        let edited_ms = timestamp(doc, &obj, "edited");
        let edited_by = if edited_ms.is_some() {
            crate::document::filing::author(doc, &obj, "edited", "", authors)
        } else {
            by.clone()
        };
        register.records.push(Record {
            id: key,
            fields,
            by,
            edited_by,
            created_ms: timestamp(doc, &obj, "created"),
            edited_ms,
        });
    }
    register
        .records
        .sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    register
}

/// A dimension records are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// The country code.
    Country,
    /// The region code (empty when the record gives none).
    Region,
    /// A violation type (a record counts once under each of its types).
    Type,
    /// The year of the date.
    Year,
    /// The gender.
    Gender,
    /// The status.
    Status,
    /// The profession.
    Profession,
}

impl Dim {
    /// Every dimension, in the order the interfaces show them.
    pub const ALL: [Dim; 7] = [
        Dim::Country,
        Dim::Region,
        Dim::Type,
        Dim::Year,
        Dim::Gender,
        Dim::Status,
        Dim::Profession,
    ];

    /// The dimension's name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Country => "country",
            Dim::Region => "region",
            Dim::Type => "type",
            Dim::Year => "year",
            Dim::Gender => "gender",
            Dim::Status => "status",
            Dim::Profession => "profession",
        }
    }

    /// The dimension named `name`.
    pub fn parse(name: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// A record's values under this dimension (several for types).
    fn values(self, f: &Fields) -> Vec<String> {
        match self {
            Dim::Country => vec![f.country.clone()],
            Dim::Region => vec![f.region.clone()],
            Dim::Type => f.types.clone(),
            Dim::Year => vec![year(&f.date)],
            Dim::Gender => vec![f.gender.clone()],
            Dim::Status => vec![f.status.clone()],
            Dim::Profession => vec![f.profession.clone()],
        }
    }
}

/// Counts of records under each value of each dimension, computed on the
/// device from the records it can read.
pub fn counts(records: &[Record]) -> BTreeMap<Dim, BTreeMap<String, u32>> {
    let mut out: BTreeMap<Dim, BTreeMap<String, u32>> = BTreeMap::new();
    for r in records {
        for dim in Dim::ALL {
            for v in dim.values(&r.fields) {
                *out.entry(dim).or_default().entry(v).or_default() += 1;
            }
        }
    }
    out
}

/// One cell of an aggregate: a value for each dimension, and how many
/// records have them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// The values, in the order of the aggregate's dimensions.
    pub values: Vec<String>,
    /// The number of records (at least the aggregate's `k`).
    pub count: u32,
}

/// Counts by a chosen set of dimensions, with the cells under `k` left out:
/// what a space manager may publish. It holds no record, no name and no
/// note; the number of cells left out is said, not what they held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// A title for the public page (one line, at most 200 characters).
    pub title: String,
    /// The dimensions, in the order of each cell's values.
    pub dims: Vec<Dim>,
    /// The suppression threshold.
    pub k: u32,
    /// The cells of `k` records or more, sorted by their values.
    pub cells: Vec<Cell>,
    /// How many cells were left out (fewer than `k` records each).
    pub suppressed: u32,
}

/// Checks dimensions and `k` for an aggregate.
fn check_spec(dims: &[Dim], k: u32) -> Result<(), RecordError> {
    if !(2..=1000).contains(&k) {
        return Err(RecordError::BadK(k));
    }
    let distinct: BTreeSet<&Dim> = dims.iter().collect();
    if distinct.len() != dims.len() || !dims.contains(&Dim::Country) {
        return Err(RecordError::Dimensions);
    }
    Ok(())
}

/// Whether a record's values are all codes an aggregate may carry: a
/// record written past the engine (or merged from two edits into
/// something no one wrote, such as a region of another country) is left
/// out of every aggregate rather than publish what it holds.
fn publishable(f: &Fields) -> bool {
    let year = year(&f.date);
    check_country(&f.country).is_ok()
        && check_region(&f.region, &f.country).is_ok()
        && year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && !f.types.is_empty()
        && f.types.iter().all(|t| is_code(t))
        && PROFESSIONS.contains(&f.profession.as_str())
        && GENDERS.contains(&f.gender.as_str())
        && STATUSES.contains(&f.status.as_str())
}

/// The aggregate of `records` by `dims` with threshold `k`. A record counts
/// once in each cell its values fall in (under each of its types when
/// `Type` is a dimension); a record whose values are not all codes
/// ([`publishable`]) counts nowhere. Refused when every cell is under `k`:
/// nothing would be published.
pub fn aggregate(
    records: &[Record],
    title: &str,
    dims: &[Dim],
    k: u32,
) -> Result<Aggregate, DocumentError> {
    let title = crate::document::checked_name(title)?;
    check_spec(dims, k)?;
    let mut cells: BTreeMap<Vec<String>, u32> = BTreeMap::new();
    for r in records.iter().filter(|r| publishable(&r.fields)) {
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for dim in dims {
            let values = dim.values(&r.fields);
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push(v.clone());
                        c
                    })
                })
                .collect();
        }
        for c in combos {
            *cells.entry(c).or_default() += 1;
        }
    }
    let (kept, under): (Vec<_>, Vec<_>) = cells.into_iter().partition(|(_, n)| *n >= k);
    if kept.is_empty() {
        return Err(RecordError::AllSuppressed(k).into());
    }
    if kept.len() > MAX_CELLS {
        return Err(RecordError::TooManyCells.into());
    }
    Ok(Aggregate {
        title,
        dims: dims.to_vec(),
        k,
        cells: kept
            .into_iter()
            .map(|(values, count)| Cell { values, count })
            .collect(),
        suppressed: under.len() as u32,
    })
}

impl Aggregate {
    /// Checks what a server or a reader receives: a title of one line,
    /// valid dimensions and `k`, each cell with a value per dimension (a
    /// known country code, a year of four digits, short values), at least
    /// `k` records, and no cell twice.
    pub fn check(&self) -> Result<(), RecordError> {
        if crate::document::checked_name(&self.title).is_err() {
            return Err(RecordError::TooLong(
                "title",
                "200 characters, one line".into(),
            ));
        }
        check_spec(&self.dims, self.k)?;
        if self.cells.is_empty() {
            return Err(RecordError::AllSuppressed(self.k));
        }
        if self.cells.len() > MAX_CELLS {
            return Err(RecordError::TooManyCells);
        }
        let country_at = self.dims.iter().position(|d| *d == Dim::Country);
        let mut previous: Option<&Vec<String>> = None;
        for cell in &self.cells {
            if cell.values.len() != self.dims.len() || cell.count < self.k {
                return Err(RecordError::UnknownValue("cells", "a cell under k".into()));
            }
            for (dim, v) in self.dims.iter().zip(&cell.values) {
                let v = v.as_str();
                let short = |v: &str| v.chars().take(40).collect::<String>();
                match dim {
                    Dim::Country => check_country(v)?,
                    Dim::Region => {
                        let country = country_at.map_or("", |i| cell.values[i].as_str());
                        check_region(v, country)?;
                    }
                    Dim::Year if !(v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit())) => {
                        return Err(RecordError::BadDate(short(v)));
                    }
                    Dim::Year => {}
                    Dim::Type if !is_code(v) => {
                        return Err(RecordError::UnknownValue("type", short(v)));
                    }
                    Dim::Type => {}
                    Dim::Gender => check_code("gender", v, &GENDERS)?,
                    Dim::Status => check_code("status", v, &STATUSES)?,
                    Dim::Profession => check_code("profession", v, &PROFESSIONS)?,
                }
            }
            // Sorted, each cell once: one aggregate has one encoding.
            if previous.is_some_and(|p| p >= &cell.values) {
                return Err(RecordError::UnknownValue(
                    "cells",
                    "cells out of order, or a cell twice".into(),
                ));
            }
            previous = Some(&cell.values);
        }
        Ok(())
    }

    fn content_hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("amicus aggregate content v1");
        let field = |h: &mut blake3::Hasher, s: &str| {
            h.update(&(s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        field(&mut h, &self.title);
        h.update(&(self.dims.len() as u64).to_be_bytes());
        for d in &self.dims {
            field(&mut h, d.as_str());
        }
        h.update(&u64::from(self.k).to_be_bytes());
        h.update(&(self.cells.len() as u64).to_be_bytes());
        for c in &self.cells {
            h.update(&(c.values.len() as u64).to_be_bytes());
            for v in &c.values {
                field(&mut h, v);
            }
            h.update(&u64::from(c.count).to_be_bytes());
        }
        h.update(&u64::from(self.suppressed).to_be_bytes());
        *h.finalize().as_bytes()
    }
}

/// An aggregate as published into a public space, with where it comes
/// from, signed by the publishing device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedAggregate {
    /// The counts.
    pub aggregate: Aggregate,
    /// Where they come from, signed (the source stream is the register's).
    pub provenance: crate::publication::Provenance,
}

/// The bytes a publisher signs (statement `Aggregate`): the public space,
/// the publication's id, the BLAKE3 of the aggregate and its source (space,
/// register stream, heads; hex).
pub fn aggregate_message(
    public_space: SpaceId,
    id: &str,
    aggregate: &Aggregate,
    source_space: &str,
    source_stream: &str,
    heads: &[String],
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&public_space.0);
    for s in [id, source_space, source_stream] {
        m.extend_from_slice(&(s.len() as u64).to_be_bytes());
        m.extend_from_slice(s.as_bytes());
    }
    m.extend_from_slice(&aggregate.content_hash());
    m.extend_from_slice(&(heads.len() as u64).to_be_bytes());
    for h in heads {
        m.extend_from_slice(&(h.len() as u64).to_be_bytes());
        m.extend_from_slice(h.as_bytes());
    }
    m
}

/// `device` signs `aggregate`, computed from the register `doc` of
/// `source_space` as it reads now, for publication `id` of `public_space`.
pub fn publish(
    doc: &mut AutoCommit,
    aggregate: Aggregate,
    device: &crate::identity::Device,
    public_space: SpaceId,
    id: &str,
    source_space: SpaceId,
) -> PublishedAggregate {
    let mut at = doc.get_heads();
    at.sort();
    let heads: Vec<String> = at.iter().map(|h| h.to_string()).collect();
    let source_stream = stream(source_space).to_hex();
    let message = aggregate_message(
        public_space,
        id,
        &aggregate,
        &source_space.to_hex(),
        &source_stream,
        &heads,
    );
    let provenance = crate::publication::Provenance {
        source_space: source_space.to_hex(),
        source_stream,
        heads,
        device: device.id().to_hex(),
        signature: hex::encode(device.sign_statement(Statement::Aggregate, &message)),
    };
    PublishedAggregate {
        aggregate,
        provenance,
    }
}

impl PublishedAggregate {
    /// Checks the signature of the device `certificate` names over this
    /// aggregate as publication `id` of `public_space`.
    pub fn verify(
        &self,
        public_space: SpaceId,
        id: &str,
        certificate: &DeviceCertificate,
    ) -> Result<(), crate::publication::ProvenanceError> {
        use crate::publication::ProvenanceError;
        let p = &self.provenance;
        if self.aggregate.check().is_err() {
            return Err(ProvenanceError::Malformed);
        }
        if certificate.device.to_hex() != p.device {
            return Err(ProvenanceError::OtherDevice);
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(&p.signature, &mut bytes).map_err(|_| ProvenanceError::Malformed)?;
        let message = aggregate_message(
            public_space,
            id,
            &self.aggregate,
            &p.source_space,
            &p.source_stream,
            &p.heads,
        );
        if verify_statement(
            &certificate.device_key,
            Statement::Aggregate,
            &message,
            &bytes,
        ) {
            Ok(())
        } else {
            Err(ProvenanceError::BadSignature)
        }
    }
}

/// Whether a published aggregate is what a member's own register gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The register at the named heads gives exactly these counts.
    Matches,
    /// It gives other counts: the aggregate was altered after it was
    /// computed (by its publisher or by the server).
    Differs,
    /// This device does not hold every named head yet.
    Unknown,
}

/// Compares `published` with what the register `doc` gives at the heads it
/// names (the same dimensions, `k` and title).
pub fn check(doc: &mut AutoCommit, published: &PublishedAggregate, authors: &Authors) -> Check {
    let mut heads = Vec::new();
    for h in &published.provenance.heads {
        match h.parse::<automerge::ChangeHash>() {
            Ok(h) if doc.get_missing_deps(std::slice::from_ref(&h)).is_empty() => heads.push(h),
            Ok(_) => return Check::Unknown,
            Err(_) => return Check::Differs,
        }
    }
    let then = doc.fork_at(&heads);
    let then = match then {
        Ok(d) => d,
        Err(_) => return Check::Unknown,
    };
    let records = read(&then, authors, |_| false).records;
    let a = &published.aggregate;
    match aggregate(&records, &a.title, &a.dims, a.k) {
        Ok(again) if &again == a => Check::Matches,
        _ => Check::Differs,
    }
}

/// Prefixes a cell that a spreadsheet would read as a formula (`=`, `+`,
/// `-`, `@`, a tab or a carriage return first) with `'`: free text from a
/// record is exported as text, never run.
fn inert(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// The records as CSV (RFC 4180, a header line first; lists joined with
/// `;`). A cell that a spreadsheet would run as a formula is prefixed with
/// `'`, whatever it is (a record written past the engine may hold anything).
pub fn records_csv(records: &[Record]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "date",
        "country",
        "region",
        "types",
        "profession",
        "gender",
        "status",
        "outcome",
        "sources",
        "notes",
        "created_by",
        "created",
        "edited_by",
        "edited",
    ];
    let _ = w.write_record(header);
    for r in records {
        let f = &r.fields;
        let _ = w.write_record(
            [
                r.id.clone(),
                f.date.clone(),
                f.country.clone(),
                f.region.clone(),
                f.types.join(";"),
                f.profession.clone(),
                f.gender.clone(),
                f.status.clone(),
                f.outcome.clone(),
                f.sources.join(";"),
                f.notes.clone(),
                r.by.name.clone(),
                r.created_ms.map(|t| t.to_string()).unwrap_or_default(),
                r.edited_by.name.clone(),
                r.edited_ms.map(|t| t.to_string()).unwrap_or_default(),
            ]
            .map(|cell| inert(&cell)),
        );
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The counts as CSV: `dimension,value,count`, one line per value.
pub fn counts_csv(counts: &BTreeMap<Dim, BTreeMap<String, u32>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["dimension", "value", "count"]);
    for (dim, values) in counts {
        for (value, n) in values {
            let _ = w.write_record([dim.as_str(), &inert(value), &n.to_string()]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2025-12-06, noon UTC.
    const NOW: i64 = 20_428 * DAY + DAY / 2;

    #[test]
    fn dates_are_real_days_not_after_today() {
        // Today in UTC+14 is tomorrow in UTC: accepted.
        for ok in [
            "2025-12-06",
            "2025-12-07",
            "2025-12",
            "2025",
            "2024-02-29",
            "1990-01-01",
        ] {
            assert_eq!(check_date(ok, NOW), Ok(()), "{ok}");
        }
        for (bad, code) in [
            ("2025-12-08", "future_date"),
            ("2026", "future_date"),
            ("2026-01", "future_date"),
            ("2025-02-29", "bad_date"),
            ("2025-13-01", "bad_date"),
            ("2025-1-01", "bad_date"),
            ("06/12/2025", "bad_date"),
            ("", "bad_date"),
            ("1850", "bad_date"),
            ("2025-12-06T10:00", "bad_date"),
        ] {
            assert_eq!(
                check_date(bad, NOW).map_err(|e| e.code()),
                Err(code),
                "{bad}"
            );
        }
    }

    #[test]
    fn countries_and_regions_are_iso_codes() {
        for ok in ["FR", "TN", "BR", "DE", "PS"] {
            assert_eq!(check_country(ok), Ok(()), "{ok}");
        }
        for bad in ["XX", "fr", "FRA", "", "F"] {
            assert!(check_country(bad).is_err(), "{bad}");
        }
        for (region, country) in [
            ("", "FR"),
            ("FR-75", "FR"),
            ("TN-11", "TN"),
            ("BR-SP", "BR"),
            ("FR-IDF", "FR"),
        ] {
            assert_eq!(check_region(region, country), Ok(()), "{region}");
        }
        for (region, country) in [
            ("TN-11", "FR"),
            ("FR-", "FR"),
            ("FR-ABCD", "FR"),
            ("FR75", "FR"),
            ("FR-é", "FR"),
            ("fr-75", "FR"),
        ] {
            assert!(check_region(region, country).is_err(), "{region}");
        }
    }

    fn record(id: &str, country: &str, date: &str, types: &[&str], gender: &str) -> Record {
        let author = Author {
            name: "amina".into(),
            verified: true,
        };
        Record {
            id: id.into(),
            fields: Fields {
                date: date.into(),
                country: country.into(),
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                profession: "lawyer".into(),
                gender: gender.into(),
                status: "open".into(),
                notes: "=HYPERLINK(\"http://x\")".into(),
                ..Fields::default()
            },
            by: author.clone(),
            edited_by: author,
            created_ms: Some(1),
            edited_ms: None,
        }
    }

    /// Each cell counts records sharing its values (a record under each of
    /// its types), cells under k are left out and only their number is
    /// said, and what a server receives is checked again.
    #[test]
    fn an_aggregate_leaves_out_cells_under_k_and_holds_no_record() {
        let records = vec![
            record(
                "a",
                "FR",
                "2024-01-02",
                &["threat", "surveillance"],
                "woman",
            ),
            record("b", "FR", "2024-06", &["threat"], "man"),
            record("c", "TN", "2025", &["arrest"], "woman"),
        ];
        let a = aggregate(&records, "Menaces", &[Dim::Country, Dim::Type], 2).unwrap();
        assert_eq!(
            a.cells,
            vec![Cell {
                values: vec!["FR".into(), "threat".into()],
                count: 2
            }]
        );
        assert_eq!(a.suppressed, 2, "FR surveillance and TN arrest");
        a.check().unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            !json.contains("HYPERLINK") && !json.contains("amina"),
            "{json}"
        );

        let mut forged = a.clone();
        forged.cells[0].count = 1;
        assert!(forged.check().is_err(), "a cell under its own k");
        let mut forged = a.clone();
        forged.cells.push(forged.cells[0].clone());
        assert!(forged.check().is_err(), "a cell twice");
        let mut forged = a.clone();
        forged.cells[0].values[0] = "Selma Haddad".into();
        assert!(forged.check().is_err(), "a name where a country goes");
        let mut forged = a.clone();
        forged.dims[1] = Dim::Gender;
        assert!(forged.check().is_err(), "a type where a gender goes");
        let b = aggregate(&records, "Menaces", &[Dim::Country], 2).unwrap();
        let mut forged = b.clone();
        forged.cells.insert(
            0,
            Cell {
                values: vec!["TN".into()],
                count: 5,
            },
        );
        assert!(forged.check().is_err(), "cells out of order");
        let mut forged = a.clone();
        forged.k = 1;
        assert_eq!(forged.check(), Err(RecordError::BadK(1)));

        for dims in [
            &[Dim::Type][..],
            &[Dim::Region],
            &[Dim::Country, Dim::Year, Dim::Country],
        ] {
            assert!(matches!(
                aggregate(&records, "Menaces", dims, 2),
                Err(DocumentError::Record(RecordError::Dimensions))
            ));
        }
        // A record written past the engine, with a name for a gender,
        // counts nowhere.
        let mut odd = records.clone();
        odd.push(record("d", "FR", "2024", &["threat"], "Selma Haddad"));
        odd.push(record("e", "FR", "2024", &["threat"], "Selma Haddad"));
        assert!(
            matches!(
                aggregate(&odd, "Menaces", &[Dim::Country, Dim::Gender], 2),
                Err(DocumentError::Record(RecordError::AllSuppressed(2)))
            ),
            "two records with a name for a gender make a cell of their own"
        );
        let by_country = aggregate(&odd, "Menaces", &[Dim::Country], 2).unwrap();
        assert_eq!(
            by_country.cells,
            vec![Cell {
                values: vec!["FR".into()],
                count: 2
            }]
        );
        assert!(matches!(
            aggregate(
                &records,
                "Menaces",
                &[Dim::Country, Dim::Gender, Dim::Year],
                2
            ),
            Err(DocumentError::Record(RecordError::AllSuppressed(2)))
        ));
    }

    /// Free text leaves as text: a formula is prefixed so that a
    /// spreadsheet shows it rather than runs it, and quotes survive.
    #[test]
    fn csv_exports_keep_formulas_inert() {
        let records = vec![record("a", "FR", "2024", &["threat", "arrest"], "woman")];
        let csv = records_csv(&records);
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("id,date,country,region,types")
        );
        let line = lines.next().unwrap();
        assert!(line.contains("threat;arrest"), "{line}");
        assert!(line.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{line}");
        let counts = counts_csv(&counts(&records));
        assert!(counts.contains("country,FR,1"), "{counts}");
        assert!(counts.contains("type,arrest,1"), "{counts}");
    }

    /// A type added by someone who is not a space manager now is not one,
    /// and does not keep a manager from adding it.
    #[test]
    fn only_managers_types_count() {
        let mut doc = AutoCommit::new();
        let actor = doc.get_actor().to_bytes().to_vec();
        let authors = Authors::new([(actor, "amina".to_owned())]);
        let none = read(&doc, &authors, |_| false);
        add_type(&mut doc, &none, "bar_strike", "Grève").unwrap();
        assert!(add_type(&mut doc, &none, "Bad Code", "x").is_err());
        assert!(
            add_type(&mut doc, &none, "threat", "x").is_err(),
            "a built-in type"
        );
        let as_manager = read(&doc, &authors, |u| u == "amina");
        assert_eq!(as_manager.types().len(), TYPES.len() + 1);
        assert_eq!(
            add_type(&mut doc, &as_manager, "bar_strike", "Encore").map_err(|e| e.to_string()),
            Err(RecordError::TypeExists("bar_strike".into()).to_string())
        );
        // Written by someone who is not a manager: not a type, and a
        // manager writes it over.
        let as_member = read(&doc, &authors, |_| false);
        assert_eq!(as_member.types().len(), TYPES.len());
        add_type(&mut doc, &as_member, "bar_strike", "Grève du barreau").unwrap();
    }
}
