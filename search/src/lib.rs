//! # amicus-search
//!
//! Multilingual full-text search of the network's public libraries, over
//! tantivy. Only [`PublicDocument`]s can be indexed: the type holds the
//! fields of a public document and nothing else, and the server builds it
//! only from documents of public spaces.
//!
//! Each language has its own title and body fields with its own analysis
//! ([`analysis`]); a document goes into the fields of its declared or
//! detected language, each paragraph written in another language (another
//! script, or reliably detected) into the fields of that one instead; the
//! text as written is stored for hits and snippets. A query is
//! analysed for every language in scope: each word matches its stem
//! exactly, with typos (edit distance 1 from 5 letters, 2 from 9, first letter kept), and the
//! last word also as a prefix; quoted phrases must match as phrases.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analysis;
pub mod automaton;
pub mod bits;
pub mod facets;
pub mod highlight;
pub mod topk;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use analysis::{Lang, detect};
use automaton::{Automata, AutomatonQuery};
use facets::{FacetCache, Matches};
pub use highlight::{Highlighter, Matcher};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TantivyDocument, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Term};
use topk::Clause;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// tantivy failed (I/O, a corrupt or locked index).
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("search index directory: {0}")]
    Directory(String),
    /// A document or query field is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// What a public document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// A text.
    Document,
    /// A file (its name and description are indexed).
    File,
}

impl DocKind {
    fn name(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::File => "file",
        }
    }
}

/// A document of a public space: the only thing the index accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicDocument {
    /// The public space (hex id).
    pub space: String,
    /// The document id within the space.
    pub id: String,
    /// The title.
    pub title: String,
    /// The text.
    pub body: String,
    /// The declared language; detected when `None`.
    pub language: Option<Lang>,
    /// Document or file.
    pub kind: DocKind,
    /// The year, if known.
    pub year: Option<u16>,
}

/// A query.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// The words; `"quoted phrases"` match as phrases.
    pub text: String,
    /// Only these languages (all when empty).
    pub languages: Vec<Lang>,
    /// Only this space.
    pub space: Option<String>,
    /// Hits to return (at most 100; 10 when 0).
    pub limit: usize,
    /// Hits to skip (at most [`MAX_OFFSET`]).
    pub offset: usize,
}

/// One hit.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The space.
    pub space: String,
    /// The document id.
    pub id: String,
    /// The title.
    pub title: String,
    /// The document's language.
    pub language: Option<Lang>,
    /// An excerpt with the matched words in `<mark>…</mark>` (HTML-escaped).
    pub snippet: String,
    /// The score.
    pub score: f32,
}

/// Hits, their total, and facet counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchResults {
    /// The hits of the page.
    pub hits: Vec<Hit>,
    /// How many documents match.
    pub total: usize,
    /// Counts per facet value: `space`, `language`, `type`, `year` →
    /// value → count.
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// How a search is evaluated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plan {
    /// A query of words through [`topk`], others through tantivy.
    Fastest,
    /// Every query through tantivy's collectors (the reference the tests
    /// compare [`topk`] with).
    #[cfg_attr(not(test), allow(dead_code))]
    Tantivy,
}

/// One language's share of a query.
#[derive(Default)]
struct LanguageQuery {
    phrases: Vec<Box<dyn Query>>,
    clauses: Vec<Clause>,
    matchers: Vec<Matcher>,
}

/// A clause as a tantivy query.
fn clause_query(c: &Clause) -> Box<dyn Query> {
    match c {
        Clause::Term { term, weight } => Box::new(BoostQuery::new(
            Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
            *weight,
        )),
        Clause::Automaton { field, dfa, weight } => Box::new(BoostQuery::new(
            Box::new(AutomatonQuery::new(*field, dfa.clone())),
            *weight,
        )),
    }
}

struct Fields {
    key: Field,
    space: Field,
    id: Field,
    lang: Field,
    facets: Field,
    year: Field,
    title_plain: Field,
    body_plain: Field,
    title: BTreeMap<Lang, Field>,
    body: BTreeMap<Lang, Field>,
}

/// The index of public documents.
///
/// Writes ([`Self::upsert`], [`Self::delete`]) go to one writer behind a
/// lock; searches read the last committed state without taking it. Changes
/// become visible and durable at a commit: [`Self::commit`] at once, or,
/// after [`Self::commit_within`], by a background committer that groups
/// the writes of a short window into one commit (near-real-time search
/// without an fsync per write). Dropping the index commits what is pending.
pub struct SearchIndex {
    shared: Arc<Shared>,
    committer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    reader: IndexReader,
    index: Index,
    writer: Mutex<Writer>,
    fields: Fields,
    facets: FacetCache,
    batch: Mutex<Batch>,
    wake: Condvar,
}

#[derive(Default)]
struct Batch {
    /// Writes since the last commit.
    pending: u64,
    /// When the first of them came.
    since: Option<Instant>,
    stop: bool,
    /// A bulk load is running: the committer waits for its end.
    paused: bool,
}

/// The memory of the index writer between commits: one indexing thread
/// (a server's writes come a few at a time).
const WRITER_BUDGET: usize = 30_000_000;

/// The memory of each indexing thread of a bulk load.
const BULK_BUDGET_PER_THREAD: usize = 100_000_000;

/// The index writer. tantivy allows one writer per index: a writer of
/// other threads and memory ([`SearchIndex::bulk_load`]) is made only once
/// this one is dropped, hence the option, `None` only if making a writer
/// failed (writes then fail with an error until one is made).
struct Writer(Option<IndexWriter>);

impl Writer {
    fn get(&mut self) -> Result<&mut IndexWriter, SearchError> {
        self.0
            .as_mut()
            .ok_or_else(|| SearchError::Directory("the index has no writer".into()))
    }
}

/// The furthest a page may start: the best `offset + limit` hits are held
/// while searching.
pub const MAX_OFFSET: usize = 10_000;

/// A committer commits at once when this many writes are pending.
const BATCH_MAX: u64 = 10_000;

/// The version of the schema and analysis. An index written under another
/// version is deleted when opened (it is derived data: the server rebuilds
/// it from the store when it finds it empty).
const SCHEMA_VERSION: &str = "3";
const VERSION_FILE: &str = "amicus-schema-version";

fn text_options(tokenizer: &str, stored: bool) -> TextOptions {
    let o = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    if stored { o.set_stored() } else { o }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let key = b.add_text_field("key", STRING);
    let space = b.add_text_field("space", STRING | STORED);
    let id = b.add_text_field("id", STORED);
    let lang = b.add_text_field("lang", STRING | STORED);
    let facets = b.add_facet_field("facets", FacetOptions::default());
    let year = b.add_u64_field("year", INDEXED | STORED | FAST);
    // The text as written, for hits and snippets; searched through the
    // per-language fields only.
    let title_plain = b.add_text_field("title", STORED);
    let body_plain = b.add_text_field("body", STORED);
    let mut title = BTreeMap::new();
    let mut body = BTreeMap::new();
    for l in Lang::ALL {
        let name = l.analyzer_name();
        title.insert(
            l,
            b.add_text_field(&format!("title_{}", l.code()), text_options(&name, false)),
        );
        body.insert(
            l,
            b.add_text_field(&format!("body_{}", l.code()), text_options(&name, false)),
        );
    }
    (
        b.build(),
        Fields {
            key,
            space,
            id,
            lang,
            facets,
            year,
            title_plain,
            body_plain,
            title,
            body,
        },
    )
}

fn key(space: &str, id: &str) -> String {
    format!("{space}/{id}")
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if needed. An index of an
    /// older schema is deleted and created empty.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        let io = |e: std::io::Error| SearchError::Directory(e.to_string());
        std::fs::create_dir_all(dir).map_err(io)?;
        let version = dir.join(VERSION_FILE);
        let current = std::fs::read_to_string(&version).ok();
        if current.as_deref() != Some(SCHEMA_VERSION) {
            for entry in std::fs::read_dir(dir).map_err(io)? {
                let path = entry.map_err(io)?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).map_err(io)?;
                } else {
                    std::fs::remove_file(&path).map_err(io)?;
                }
            }
            std::fs::write(&version, SCHEMA_VERSION).map_err(io)?;
        }
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| SearchError::Directory(e.to_string()))?;
        let index = Index::open_or_create(directory, schema)?;
        Self::with_index(index, fields)
    }

    /// An index in memory (tests).
    pub fn in_memory() -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        for l in Lang::ALL {
            index
                .tokenizers()
                .register(&l.analyzer_name(), l.analyzer());
        }
        let writer = index.writer_with_num_threads(1, WRITER_BUDGET)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let facets = FacetCache::new(fields.facets);
        facets.refresh(&reader.searcher())?;
        Ok(Self {
            shared: Arc::new(Shared {
                reader,
                index,
                writer: Mutex::new(Writer(Some(writer))),
                fields,
                facets,
                batch: Mutex::new(Batch::default()),
                wake: Condvar::new(),
            }),
            committer: None,
        })
    }

    /// Commits pending writes in the background, at most `delay` after the
    /// first of them (or at once when 10,000 are pending). A failed commit
    /// is reported to `on_error` and retried with the next write.
    pub fn commit_within(
        &mut self,
        delay: Duration,
        on_error: impl Fn(&SearchError) + Send + 'static,
    ) {
        if self.committer.is_some() {
            return;
        }
        let shared = self.shared.clone();
        self.committer = Some(std::thread::spawn(move || {
            loop {
                {
                    let mut batch = shared.batch.lock().expect("batch lock");
                    loop {
                        if batch.stop {
                            return;
                        }
                        if batch.paused {
                            batch = shared.wake.wait(batch).expect("batch lock");
                            continue;
                        }
                        match batch.since {
                            Some(_) if batch.pending >= BATCH_MAX => break,
                            Some(since) => {
                                let due = since + delay;
                                let now = Instant::now();
                                if now >= due {
                                    break;
                                }
                                batch = shared
                                    .wake
                                    .wait_timeout(batch, due - now)
                                    .expect("batch lock")
                                    .0;
                            }
                            None => batch = shared.wake.wait(batch).expect("batch lock"),
                        }
                    }
                }
                if let Err(e) = shared.commit() {
                    on_error(&e);
                    // Wait for the next write rather than spin on a failure.
                    shared.batch.lock().expect("batch lock").since = None;
                }
            }
        }));
    }

    /// Writes not yet committed.
    pub fn pending(&self) -> u64 {
        self.shared.batch.lock().expect("batch lock").pending
    }

    fn touched(&self) {
        let mut batch = self.shared.batch.lock().expect("batch lock");
        batch.pending += 1;
        if batch.since.is_none() {
            batch.since = Some(Instant::now());
        }
        if batch.pending == 1 || batch.pending >= BATCH_MAX {
            self.shared.wake.notify_all();
        }
    }

    /// Adds or replaces a document (visible after the next commit).
    pub fn upsert(&self, doc: &PublicDocument) -> Result<Lang, SearchError> {
        let (key, d, lang) = self.build(doc)?;
        {
            // Delete and add under one lock: two updates of one document
            // cannot interleave into two copies.
            let mut writer = self.shared.writer.lock().expect("index writer lock");
            let writer = writer.get()?;
            writer.delete_term(Term::from_field_text(self.shared.fields.key, &key));
            writer.add_document(d)?;
        }
        self.touched();
        Ok(lang)
    }

    /// Adds a document known not to be in the index (a rebuild after
    /// [`Self::clear`]): no deletion of an older copy, so bulk loads go
    /// faster. Adding a document already present makes two copies.
    pub fn insert_new(&self, doc: &PublicDocument) -> Result<Lang, SearchError> {
        let (_, d, lang) = self.build(doc)?;
        self.shared
            .writer
            .lock()
            .expect("index writer lock")
            .get()?
            .add_document(d)?;
        self.touched();
        Ok(lang)
    }

    fn build(&self, doc: &PublicDocument) -> Result<(String, TantivyDocument, Lang), SearchError> {
        if doc.space.is_empty() || doc.id.is_empty() {
            return Err(SearchError::Invalid(
                "a document needs a space and an id".into(),
            ));
        }
        let f = &self.shared.fields;
        let k = key(&doc.space, &doc.id);
        let lang = doc
            .language
            .or_else(|| detect(&format!("{} {}", doc.title, doc.body)))
            .unwrap_or(Lang::En);
        let mut d = TantivyDocument::default();
        d.add_text(f.key, &k);
        d.add_text(f.space, &doc.space);
        d.add_text(f.id, &doc.id);
        d.add_text(f.title_plain, &doc.title);
        d.add_text(f.body_plain, &doc.body);
        d.add_text(f.title[&lang], &doc.title);
        let title_lang = analysis::paragraph_language(&doc.title, lang, false);
        if title_lang != lang {
            d.add_text(f.title[&title_lang], &doc.title);
        }
        // Each paragraph in the fields of its own language: a filing with
        // a French and an Arabic paragraph is found by words of each. A
        // paragraph in the same script stays in the document's language
        // too (a detection can be wrong; recall is kept). The document's
        // language is stored first (the hit's language).
        let mut languages = Vec::new();
        for (l, text) in analysis::by_language(&doc.body, lang) {
            d.add_text(f.body[&l], &text);
            if l != lang && l.is_arabic_script() == lang.is_arabic_script() {
                d.add_text(f.body[&lang], &text);
            }
            languages.push(l);
        }
        if !languages.contains(&title_lang) {
            languages.push(title_lang);
        }
        for l in languages {
            d.add_text(f.lang, l.code());
            d.add_facet(f.facets, Facet::from_path(["language", l.code()]));
        }
        d.add_facet(f.facets, Facet::from_path(["space", doc.space.as_str()]));
        d.add_facet(f.facets, Facet::from_path(["type", doc.kind.name()]));
        if let Some(y) = doc.year {
            d.add_u64(f.year, u64::from(y));
            d.add_facet(f.facets, Facet::from_path(["year", &y.to_string()]));
        }
        Ok((k, d, lang))
    }

    /// Deletes a document (effective after the next commit).
    pub fn delete(&self, space: &str, id: &str) -> Result<(), SearchError> {
        self.shared
            .writer
            .lock()
            .expect("index writer lock")
            .get()?
            .delete_term(Term::from_field_text(
                self.shared.fields.key,
                &key(space, id),
            ));
        self.touched();
        Ok(())
    }

    /// Deletes everything (before a rebuild).
    pub fn clear(&self) -> Result<(), SearchError> {
        self.shared
            .writer
            .lock()
            .expect("index writer lock")
            .get()?
            .delete_all_documents()?;
        self.touched();
        Ok(())
    }

    /// Makes the pending changes durable and visible to searches now.
    pub fn commit(&self) -> Result<(), SearchError> {
        self.shared.commit()
    }

    /// Runs a bulk load (`load`, typically [`Self::clear`] then
    /// [`Self::insert_new`] for every document) with an index writer of one
    /// thread per core (at most 8) and 100 MB each, then commits, merges
    /// the segments into one ([`Self::merge_segments`]) and goes back to
    /// the writer of one thread. Other writes meanwhile go through the
    /// bulk writer, and the background committer waits: a load is
    /// committed whole or not at all. A failed load is rolled back to the
    /// last commit before it, with the writes made meanwhile (they are in
    /// the store: the next rebuild brings them back).
    pub fn bulk_load<R>(
        &self,
        load: impl FnOnce(&Self) -> Result<R, SearchError>,
    ) -> Result<R, SearchError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        self.shared.pause_committer(true);
        let loaded = self
            .replace_writer(threads, BULK_BUDGET_PER_THREAD * threads, true)
            .and_then(|()| load(self))
            .and_then(|r| {
                self.commit()?;
                self.merge_segments()?;
                Ok(r)
            });
        let back = self.replace_writer(1, WRITER_BUDGET, loaded.is_ok());
        self.shared.pause_committer(false);
        let r = loaded?;
        back?;
        Ok(r)
    }

    /// Makes a writer of `threads` and `budget` in place of the current
    /// one, whose writes are committed first (`keep`) or rolled back. If
    /// the new writer cannot be made, a writer of one thread is tried.
    fn replace_writer(&self, threads: usize, budget: usize, keep: bool) -> Result<(), SearchError> {
        let mut writer = self.shared.writer.lock().expect("index writer lock");
        if let Some(mut old) = writer.0.take() {
            let ended = if keep {
                old.commit().map(|_| ())
            } else {
                old.rollback().map(|_| ())
            };
            if let Err(e) = ended {
                writer.0 = Some(old);
                return Err(e.into());
            }
        }
        let made = self.shared.index.writer_with_num_threads(threads, budget);
        let made = match made {
            Ok(w) => Ok(w),
            Err(e) => self
                .shared
                .index
                .writer_with_num_threads(1, WRITER_BUDGET)
                .map_err(|_| e),
        };
        match made {
            Ok(w) => {
                writer.0 = Some(w);
                drop(writer);
                self.shared.reader.reload()?;
                self.shared.facets.refresh(&self.shared.reader.searcher())?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Merges every segment into one, once writes committed so far are
    /// merged (after a rebuild): a search walks each segment's term
    /// dictionaries with its typo and prefix automata, so one segment
    /// answers faster than several. Writes go on meanwhile; the merge
    /// becomes visible when it ends.
    pub fn merge_segments(&self) -> Result<(), SearchError> {
        // A segment the merge policy is merging cannot be merged again
        // until that merge ends: then the list is read again (for ten
        // minutes at most).
        let mut attempts = 0;
        loop {
            let merging = {
                let mut writer = self.shared.writer.lock().expect("index writer lock");
                let writer = writer.get()?;
                let ids = writer.index().searchable_segment_ids()?;
                if ids.len() < 2 {
                    break;
                }
                writer.merge(&ids)
            };
            match merging.wait() {
                Ok(_) => break,
                Err(tantivy::TantivyError::InvalidArgument(_)) if attempts < 6_000 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.shared.reader.reload()?;
        self.shared.facets.refresh(&self.shared.reader.searcher())?;
        Ok(())
    }

    /// How many segments searches read (each is searched on its own).
    pub fn segments(&self) -> usize {
        self.shared.reader.searcher().segment_readers().len()
    }

    /// Number of documents visible to searches.
    pub fn len(&self) -> u64 {
        self.shared.reader.searcher().num_docs()
    }

    /// True if no document is visible.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Searches the last committed state.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchResults, SearchError> {
        self.shared.search(q, Plan::Fastest)
    }
}

/// The (space, id) of every document of the index in `dir`, read without
/// opening a writer (for the audit). Errors if `dir` holds no index of this
/// schema version.
pub fn stored_keys(dir: &Path) -> Result<Vec<(String, String)>, SearchError> {
    let version = std::fs::read_to_string(dir.join(VERSION_FILE)).ok();
    if version.as_deref() != Some(SCHEMA_VERSION) {
        return Err(SearchError::Invalid(format!(
            "{} holds no index of schema version {SCHEMA_VERSION}",
            dir.display()
        )));
    }
    let index = Index::open_in_dir(dir)?;
    let (_, fields) = schema();
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let mut out = Vec::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        for doc in segment.doc_ids_alive() {
            let d: TantivyDocument = searcher.doc(tantivy::DocAddress::new(ord as u32, doc))?;
            let text = |f: Field| {
                d.get_first(f)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            out.push((text(fields.space), text(fields.id)));
        }
    }
    Ok(out)
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        if let Some(committer) = self.committer.take() {
            self.shared.batch.lock().expect("batch lock").stop = true;
            self.shared.wake.notify_all();
            let _ = committer.join();
        }
        if self.pending() > 0 {
            let _ = self.shared.commit();
        }
    }
}

impl Shared {
    fn pause_committer(&self, paused: bool) {
        self.batch.lock().expect("batch lock").paused = paused;
        self.wake.notify_all();
    }

    fn commit(&self) -> Result<(), SearchError> {
        let mut writer = self.writer.lock().expect("index writer lock");
        // A write counted after this reset is in this commit or the next
        // (at worst the next commit finds nothing new).
        let taken = {
            let mut batch = self.batch.lock().expect("batch lock");
            let n = batch.pending;
            batch.pending = 0;
            batch.since = None;
            n
        };
        let committed = writer
            .get()
            .and_then(|w| w.commit().map_err(SearchError::from));
        if let Err(e) = committed {
            let mut batch = self.batch.lock().expect("batch lock");
            batch.pending += taken;
            batch.since.get_or_insert_with(Instant::now);
            return Err(e);
        }
        drop(writer);
        self.reader.reload()?;
        // Facet values of new segments are read now rather than by the
        // next search; merged-away segments are forgotten.
        self.facets.refresh(&self.reader.searcher())?;
        Ok(())
    }

    /// The clauses of one query word in `lang`: each stem exactly, in the
    /// title (weight 2) and the body (weight 1); with typos at 0.3 of
    /// that; as a prefix at 0.2 (0.3 for the last word).
    fn word_clauses(
        &self,
        matchers: &[Matcher],
        last: bool,
        lang: Lang,
        automata: &mut Automata,
        out: &mut Vec<Clause>,
    ) {
        for m in matchers {
            for (field, boost) in [
                (self.fields.title[&lang], 2.0),
                (self.fields.body[&lang], 1.0),
            ] {
                out.push(Clause::Term {
                    term: Term::from_field_text(field, &m.stem),
                    weight: boost,
                });
                if m.distance > 0 {
                    out.push(Clause::Automaton {
                        field,
                        dfa: automata.get(&m.stem, m.distance, false),
                        weight: 0.3 * boost,
                    });
                }
                if m.prefix {
                    let weight = if last { 0.3 } else { 0.2 };
                    out.push(Clause::Automaton {
                        field,
                        dfa: automata.get(&m.stem, 0, true),
                        weight: weight * boost,
                    });
                }
            }
        }
    }

    /// A quoted phrase: its words in order, at the distances they have in
    /// the text once stop words are left out ("right to life" matches
    /// "right to life", not "right life"). `None` if the phrase holds only
    /// stop words (it then constrains nothing).
    fn phrase_query(&self, lang: Lang, phrase: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = lang.analyzer();
        let stems = analysis::positioned_tokens(&mut analyzer, phrase);
        let first = stems.first()?.0;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for field in [self.fields.title[&lang], self.fields.body[&lang]] {
            let terms: Vec<(usize, Term)> = stems
                .iter()
                .map(|(p, s)| (p - first, Term::from_field_text(field, s)))
                .collect();
            let q: Box<dyn Query> = if terms.len() == 1 {
                Box::new(TermQuery::new(
                    terms[0].1.clone(),
                    IndexRecordOption::WithFreqs,
                ))
            } else {
                Box::new(PhraseQuery::new_with_offset(terms))
            };
            clauses.push((Occur::Should, q));
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// One language's share of a query: its phrases (each must match),
    /// the clauses of its words (at least one must match; more rank
    /// higher), and what its words match, for the snippets.
    fn language_query(&self, lang: Lang, text: &str, automata: &mut Automata) -> LanguageQuery {
        let mut out = LanguageQuery::default();
        let ends_with_space = text.ends_with(char::is_whitespace);
        let parts: Vec<&str> = text.split('"').collect();
        let mut words = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 && i + 1 < parts.len() {
                if let Some(q) = self.phrase_query(lang, part) {
                    out.phrases.push(q);
                }
                out.matchers
                    .extend(
                        highlight::matchers(lang, part, false)
                            .into_iter()
                            .map(|m| Matcher {
                                distance: 0,
                                prefix: false,
                                ..m
                            }),
                    );
            } else {
                words.extend(part.split_whitespace());
            }
        }
        let n = words.len();
        for (i, w) in words.into_iter().enumerate() {
            let last = i + 1 == n && !ends_with_space && !text.trim_end().ends_with('"');
            let matchers = highlight::matchers(lang, w, last);
            self.word_clauses(&matchers, last, lang, automata, &mut out.clauses);
            out.matchers.extend(matchers);
        }
        // A word written twice counts twice, evaluated once.
        out.clauses = topk::merged(out.clauses);
        // No filter on the language is needed: a language's fields hold
        // text only of documents that list the language (`build`).
        out
    }

    fn search(&self, q: &SearchQuery, plan: Plan) -> Result<SearchResults, SearchError> {
        if q.text.chars().count() > 1_000 {
            return Err(SearchError::Invalid(
                "a query holds at most 1,000 characters".into(),
            ));
        }
        if q.offset > MAX_OFFSET {
            return Err(SearchError::Invalid(format!(
                "a page starts at most {MAX_OFFSET} hits in"
            )));
        }
        let searcher = self.reader.searcher();
        // Only languages asked for, present in the index, and written in
        // the query's script (an Arabic word is not looked up in the
        // French fields, nor a Latin one in the Arabic fields).
        let arabic = q.text.chars().any(analysis::is_arabic);
        let latin = q
            .text
            .chars()
            .any(|c| c.is_alphabetic() && !analysis::is_arabic(c));
        // Digits and signs alone are looked up everywhere.
        let (arabic, latin) = if arabic || latin {
            (arabic, latin)
        } else {
            (true, true)
        };
        let mut languages = Vec::new();
        // Each language once, however often it is asked for.
        let asked: std::collections::BTreeSet<Lang> = if q.languages.is_empty() {
            Lang::ALL.into_iter().collect()
        } else {
            q.languages.iter().copied().collect()
        };
        for l in asked {
            let script = if l.is_arabic_script() { arabic } else { latin };
            let lang_term = Term::from_field_text(self.fields.lang, l.code());
            if script && searcher.doc_freq(&lang_term)? > 0 {
                languages.push(l);
            }
        }
        let mut matchers: BTreeMap<Lang, Vec<Matcher>> = BTreeMap::new();
        let mut automata = Automata::default();
        let mut per_lang = Vec::new();
        for l in &languages {
            let lq = self.language_query(*l, &q.text, &mut automata);
            if lq.phrases.is_empty() && lq.clauses.is_empty() {
                continue;
            }
            matchers.insert(*l, lq.matchers);
            per_lang.push((lq.phrases, lq.clauses));
        }
        if per_lang.is_empty() {
            return Ok(SearchResults::default());
        }
        let limit = match q.limit {
            0 => 10,
            n => n.min(100),
        };
        let space = q
            .space
            .as_ref()
            .map(|s| Term::from_field_text(self.fields.space, s));
        let (top, total, mut counts) =
            if plan == Plan::Fastest && per_lang.iter().all(|(phrases, _)| phrases.is_empty()) {
                // Words only: one union of clauses (`topk`).
                let clauses: Vec<Clause> = per_lang.into_iter().flat_map(|(_, c)| c).collect();
                let found = topk::search(
                    &searcher,
                    &clauses,
                    space.as_ref(),
                    limit,
                    q.offset,
                    &self.facets,
                )?;
                (found.top, found.total, found.counts)
            } else {
                // A language matches when all its phrases do; its words rank.
                let mut langs: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for (phrases, clauses) in per_lang {
                    let mut musts: Vec<(Occur, Box<dyn Query>)> =
                        phrases.into_iter().map(|p| (Occur::Must, p)).collect();
                    if !clauses.is_empty() {
                        let words = clauses
                            .iter()
                            .map(|c| (Occur::Should, clause_query(c)))
                            .collect();
                        musts.push((Occur::Must, Box::new(BooleanQuery::new(words))));
                    }
                    langs.push((Occur::Should, Box::new(BooleanQuery::new(musts))));
                }
                let mut clauses: Vec<(Occur, Box<dyn Query>)> =
                    vec![(Occur::Must, Box::new(BooleanQuery::new(langs)))];
                if let Some(space) = space {
                    // A filter: it adds nothing to the score.
                    clauses.push((
                        Occur::Must,
                        Box::new(BoostQuery::new(
                            Box::new(TermQuery::new(space, IndexRecordOption::Basic)),
                            0.0,
                        )),
                    ));
                }
                let (top, (total, counts)) = searcher.search(
                    &BooleanQuery::new(clauses),
                    &(
                        TopDocs::with_limit(limit)
                            .and_offset(q.offset)
                            .order_by_score(),
                        Matches::new(&self.facets),
                    ),
                )?;
                (top, total, counts)
            };
        let mut hits = Vec::new();
        let mut highlighters: BTreeMap<Lang, Highlighter> = BTreeMap::new();
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |f: Field| {
                doc.get_first(f)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let language = Lang::from_code(&text(self.fields.lang));
            let body = text(self.fields.body_plain);
            // The snippet of the first of the document's languages whose
            // query words it holds (the document's own language first).
            let languages: Vec<Lang> = doc
                .get_all(self.fields.lang)
                .filter_map(|v| v.as_str().and_then(Lang::from_code))
                .collect();
            let mut snippet = None;
            for l in languages.iter().filter(|l| matchers.contains_key(l)) {
                let s = highlighters
                    .entry(*l)
                    .or_insert_with(|| Highlighter::new(*l, matchers[l].clone()))
                    .snippet(&body);
                if s.contains("<mark>") {
                    snippet = Some(s);
                    break;
                }
            }
            let snippet = snippet
                .unwrap_or_else(|| highlight::snippet(language.unwrap_or(Lang::En), &body, &[]));
            hits.push(Hit {
                space: text(self.fields.space),
                id: text(self.fields.id),
                title: text(self.fields.title_plain),
                language,
                snippet,
                score,
            });
        }
        let facet_counts = ["space", "language", "type", "year"]
            .into_iter()
            .map(|name| (name.to_owned(), counts.remove(name).unwrap_or_default()))
            .collect();
        Ok(SearchResults {
            hits,
            total,
            facets: facet_counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(space: &str, id: &str, title: &str, body: &str, lang: Option<Lang>) -> PublicDocument {
        PublicDocument {
            space: space.into(),
            id: id.into(),
            title: title.into(),
            body: body.into(),
            language: lang,
            kind: DocKind::Document,
            year: Some(2019),
        }
    }

    fn index() -> SearchIndex {
        let i = SearchIndex::in_memory().unwrap();
        i.upsert(&doc(
            "s1",
            "a",
            "Conditions de détention",
            "Les détenus de la prison centrale de Makala vivent dans des conditions inhumaines.",
            Some(Lang::Fr),
        ))
        .unwrap();
        i.upsert(&doc(
            "s1",
            "b",
            "Liberté de la presse",
            "Les journalistes ont été arrêtés à Bujumbura.",
            None,
        ))
        .unwrap();
        i.upsert(&doc(
            "s2",
            "c",
            "Freedom of assembly",
            "Protesters were detained in Kampala after the rally.",
            Some(Lang::En),
        ))
        .unwrap();
        i.upsert(&doc(
            "s2",
            "d",
            "الحق في الحرية",
            "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق.",
            None,
        ))
        .unwrap();
        i.commit().unwrap();
        i
    }

    /// Words of two languages, their inflections and typos, for indexes
    /// and queries drawn at random.
    const WORDS: [&str; 24] = [
        "detention",
        "detained",
        "detainees",
        "detension",
        "prison",
        "prisons",
        "prisoner",
        "freedom",
        "free",
        "freely",
        "assembly",
        "assemblies",
        "journalist",
        "journalists",
        "détention",
        "détenus",
        "liberté",
        "libertés",
        "presse",
        "prisonniers",
        "arrêtés",
        "arrestation",
        "torture",
        "tortures",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

        /// A query of words gives, through `topk`, what tantivy's own
        /// collectors give: the same total and facets, and the same page
        /// (scores equal to rounding; documents whose scores tie at the
        /// end of the page may differ).
        #[test]
        fn a_query_of_words_finds_what_tantivy_finds(
            batches in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::collection::vec(0usize..WORDS.len(), 1..12), 0u8..3, proptest::bool::ANY),
                    1..25,
                ),
                1..4,
            ),
            deleted in proptest::collection::vec(0usize..60, 0..6),
            words in proptest::collection::vec((0usize..WORDS.len(), 0usize..8), 1..4),
            space in proptest::option::of(0u8..3),
            trailing_space in proptest::bool::ANY,
            limit in 1usize..8,
            offset in 0usize..4,
        ) {
            let index = SearchIndex::in_memory().unwrap();
            let mut n = 0;
            for batch in &batches {
                for (body, s, french) in batch {
                    let body: Vec<&str> = body.iter().map(|w| WORDS[*w]).collect();
                    index.upsert(&doc(
                        &format!("s{s}"),
                        &format!("d{n}"),
                        body[0],
                        &body.join(" "),
                        Some(if *french { Lang::Fr } else { Lang::En }),
                    )).unwrap();
                    n += 1;
                }
                index.commit().unwrap();
            }
            for d in &deleted {
                index.delete(&format!("s{}", d % 3), &format!("d{d}")).unwrap();
            }
            index.commit().unwrap();
            // Whole words, and words cut short (prefixes, typos at the end).
            let text: Vec<String> = words
                .iter()
                .map(|(w, cut)| {
                    let w: Vec<char> = WORDS[*w].chars().collect();
                    w[..w.len().saturating_sub(*cut).max(2)].iter().collect()
                })
                .collect();
            let query = SearchQuery {
                text: text.join(" ") + if trailing_space { " " } else { "" },
                space: space.map(|s| format!("s{s}")),
                limit,
                offset,
                ..Default::default()
            };
            let fast = index.shared.search(&query, Plan::Fastest).unwrap();
            let reference = index.shared.search(&query, Plan::Tantivy).unwrap();
            proptest::prop_assert_eq!(fast.total, reference.total);
            proptest::prop_assert_eq!(&fast.facets, &reference.facets);
            proptest::prop_assert_eq!(fast.hits.len(), reference.hits.len());
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * a.abs().max(1.0);
            for (f, r) in fast.hits.iter().zip(&reference.hits) {
                proptest::prop_assert!(close(f.score, r.score), "{} vs {}", f.score, r.score);
            }
            if let Some(last) = reference.hits.last() {
                for f in &fast.hits {
                    if let Some(r) = reference.hits.iter().find(|r| r.id == f.id) {
                        proptest::prop_assert!(close(f.score, r.score));
                    } else {
                        proptest::prop_assert!(close(f.score, last.score), "{} is not a tie", f.id);
                    }
                }
            }
        }
    }

    fn ids(r: &SearchResults) -> Vec<&str> {
        r.hits.iter().map(|h| h.id.as_str()).collect()
    }

    fn q(text: &str) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn inflections_typos_prefixes_and_accents_match() {
        let i = index();
        assert_eq!(ids(&i.search(&q("détention")).unwrap())[0], "a");
        assert_eq!(
            ids(&i.search(&q("detenus")).unwrap())[0],
            "a",
            "accent-insensitive"
        );
        assert_eq!(
            ids(&i.search(&q("journaliste")).unwrap())[0],
            "b",
            "detected French, stemmed"
        );
        assert_eq!(ids(&i.search(&q("protesers")).unwrap())[0], "c", "a typo");
        assert_eq!(
            ids(&i.search(&q("Kamp")).unwrap())[0],
            "c",
            "prefix of the last word"
        );
        assert_eq!(ids(&i.search(&q("الحقوق")).unwrap())[0], "d");
        assert_eq!(
            ids(&i.search(&q("حقوق")).unwrap())[0],
            "d",
            "Arabic without the article"
        );
        assert_eq!(ids(&i.search(&q("كرامة")).unwrap())[0], "d");
    }

    #[test]
    fn phrases_filters_facets_snippets_and_pages() {
        let i = index();
        assert_eq!(
            ids(&i.search(&q("\"prison centrale\"")).unwrap()),
            vec!["a"]
        );
        assert!(ids(&i.search(&q("\"centrale prison\"")).unwrap()).is_empty());
        // Stop words inside a phrase keep their place.
        assert_eq!(
            ids(&i.search(&q("\"détenus de la prison\"")).unwrap()),
            vec!["a"]
        );
        assert!(ids(&i.search(&q("\"détenus prison\"")).unwrap()).is_empty());
        assert!(ids(&i.search(&q("\"de la\"")).unwrap()).is_empty());
        let fr_only = SearchQuery {
            languages: vec![Lang::Fr],
            ..q("detained détenus")
        };
        assert_eq!(ids(&i.search(&fr_only).unwrap()), vec!["a"]);
        let s2 = SearchQuery {
            space: Some("s2".into()),
            ..q("détenus detained")
        };
        assert_eq!(ids(&i.search(&s2).unwrap()), vec!["c"]);
        let r = i.search(&q("détenus detained")).unwrap();
        assert_eq!(r.total, 2);
        assert_eq!(r.facets["language"].get("fr"), Some(&1));
        assert_eq!(r.facets["language"].get("en"), Some(&1));
        assert_eq!(r.facets["year"].get("2019"), Some(&2));
        let a = r.hits.iter().find(|h| h.id == "a").unwrap();
        assert!(a.snippet.contains("<mark>détenus</mark>"), "{}", a.snippet);
        let page = SearchQuery {
            limit: 1,
            offset: 1,
            ..q("détenus detained")
        };
        let p = i.search(&page).unwrap();
        assert_eq!(p.hits.len(), 1);
        assert_eq!(p.total, 2);
    }

    /// A filing written in French with a paragraph in Arabic (and one in
    /// English) is found by words of each, each word marked in its
    /// snippet, and counted under each language.
    #[test]
    fn each_paragraph_is_found_in_its_own_language() {
        let i = SearchIndex::in_memory().unwrap();
        i.upsert(&doc(
            "s",
            "mixte",
            "Recours devant la Cour africaine",
            "Les avocats ont été arrêtés à Bujumbura pendant une audience publique, \
             et leurs dossiers ont été saisis par la police.\n\
             واعتقلت الشرطة المحامين أثناء الجلسة وصادرت ملفات الدفاع.\n\
             The lawyers were detained for three weeks without any charge being brought against them.",
            Some(Lang::Fr),
        ))
        .unwrap();
        i.upsert(&doc(
            "s",
            "autre",
            "Liberté de la presse",
            "Les journalistes ont été libérés.",
            None,
        ))
        .unwrap();
        i.commit().unwrap();
        for (query, word) in [
            ("saisis", "saisis"),
            ("المحامين", "المحامين"),
            ("الشرطة", "الشرطة"),
            ("charge", "charge"),
        ] {
            let r = i.search(&q(query)).unwrap();
            assert_eq!(ids(&r), vec!["mixte"], "{query}");
            assert_eq!(r.hits[0].language, Some(Lang::Fr), "{query}");
            assert!(
                r.hits[0].snippet.contains(&format!("<mark>{word}</mark>")),
                "{query}: {}",
                r.hits[0].snippet
            );
        }
        // French stemming still applies to the French paragraphs only:
        // "arrêté" finds "arrêtés".
        assert_eq!(ids(&i.search(&q("arrêté")).unwrap())[0], "mixte");
        let ar_only = SearchQuery {
            languages: vec![Lang::Ar],
            ..q("المحامين")
        };
        assert_eq!(ids(&i.search(&ar_only).unwrap()), vec!["mixte"]);
        let r = i.search(&q("المحامين")).unwrap();
        assert_eq!(r.facets["language"].get("ar"), Some(&1));
        assert_eq!(r.facets["language"].get("fr"), Some(&1));
    }

    #[test]
    fn updates_and_deletes_are_visible_after_commit() {
        let i = index();
        i.upsert(&doc(
            "s1",
            "a",
            "Autre titre",
            "Rien à voir.",
            Some(Lang::Fr),
        ))
        .unwrap();
        i.delete("s2", "c").unwrap();
        i.commit().unwrap();
        assert!(ids(&i.search(&q("détenus")).unwrap()).is_empty());
        assert!(ids(&i.search(&q("detained")).unwrap()).is_empty());
        assert_eq!(i.len(), 3);
    }

    #[test]
    fn typo_and_prefix_matches_are_highlighted() {
        let i = index();
        let r = i.search(&q("protesers Kamp")).unwrap();
        assert_eq!(
            r.hits[0].snippet,
            "<mark>Protesters</mark> were detained in <mark>Kampala</mark> after the rally."
        );
        let r = i.search(&q("\"prison centrale\"")).unwrap();
        assert!(
            r.hits[0]
                .snippet
                .contains("<mark>prison</mark> <mark>centrale</mark>"),
            "{}",
            r.hits[0].snippet
        );
    }

    #[test]
    fn stored_keys_lists_every_live_document() {
        let dir = tempfile::tempdir().unwrap();
        {
            let i = SearchIndex::open(dir.path()).unwrap();
            for id in ["a", "b", "c"] {
                i.upsert(&doc("s", id, "T", "Texte.", Some(Lang::Fr)))
                    .unwrap();
            }
            i.delete("s", "b").unwrap();
            i.commit().unwrap();
        }
        let mut keys = stored_keys(dir.path()).unwrap();
        keys.sort();
        assert_eq!(
            keys,
            vec![("s".into(), "a".into()), ("s".into(), "c".into())]
        );
        assert!(stored_keys(&dir.path().join("nothing")).is_err());
    }

    #[test]
    fn a_bulk_load_replaces_everything_and_the_writer_comes_back() {
        let index = index();
        let loaded = index
            .bulk_load(|i| {
                i.clear()?;
                for n in 0..30 {
                    i.insert_new(&doc(
                        "s3",
                        &format!("b{n}"),
                        "Torture",
                        "Allegations of torture in detention.",
                        Some(Lang::En),
                    ))?;
                    if n % 10 == 9 {
                        i.commit()?;
                    }
                }
                Ok(30)
            })
            .unwrap();
        assert_eq!(loaded, 30);
        assert_eq!(index.len(), 30);
        assert_eq!(index.segments(), 1);
        assert_eq!(index.search(&q("torture ")).unwrap().total, 30);
        assert_eq!(index.search(&q("Makala ")).unwrap().total, 0);
        // A failed load reports its error; its uncommitted writes are
        // dropped and the index takes writes again.
        let failed = index.bulk_load(|i| {
            i.insert_new(&doc(
                "s3",
                "lost",
                "Lost",
                "Never committed.",
                Some(Lang::En),
            ))?;
            Err::<(), _>(SearchError::Invalid("the store failed".into()))
        });
        assert!(matches!(failed, Err(SearchError::Invalid(_))));
        index
            .upsert(&doc(
                "s3",
                "after",
                "After",
                "Committed later.",
                Some(Lang::En),
            ))
            .unwrap();
        index.commit().unwrap();
        assert_eq!(index.len(), 31);
        assert_eq!(index.search(&q("never ")).unwrap().total, 0);
    }

    #[test]
    fn a_failed_bulk_load_leaves_the_index_as_it_was_even_with_a_committer() {
        let mut index = index();
        index.commit_within(Duration::from_millis(1), |_| {});
        let failed = index.bulk_load(|i| {
            i.clear()?;
            // The committer would have committed the clear by now.
            std::thread::sleep(Duration::from_millis(100));
            Err::<(), _>(SearchError::Invalid("the store failed".into()))
        });
        assert!(failed.is_err());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(index.len(), 4);
        assert_eq!(index.search(&q("Makala ")).unwrap().total, 1);
        // The committer works again.
        index
            .upsert(&doc(
                "s3",
                "e",
                "Torture",
                "Torture in Goma.",
                Some(Lang::En),
            ))
            .unwrap();
        let t = Instant::now();
        while index.len() < 5 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn languages_asked_for_many_times_are_searched_once_and_pages_start_within_bounds() {
        let index = index();
        let once = index
            .search(&SearchQuery {
                text: "détenus détention ".into(),
                languages: vec![Lang::Fr],
                ..Default::default()
            })
            .unwrap();
        let many = index
            .search(&SearchQuery {
                text: "détenus détention ".into(),
                languages: vec![Lang::Fr; 20_000],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(once, many);
        let far = |offset| {
            index.search(&SearchQuery {
                text: "détenus ".into(),
                offset,
                ..Default::default()
            })
        };
        assert!(far(MAX_OFFSET).unwrap().hits.is_empty());
        assert!(matches!(far(usize::MAX), Err(SearchError::Invalid(_))));
    }

    #[test]
    fn merging_segments_keeps_every_document_and_answer() {
        let index = SearchIndex::in_memory().unwrap();
        for batch in 0..4 {
            for i in 0..5 {
                index
                    .upsert(&doc(
                        "s1",
                        &format!("d{batch}-{i}"),
                        "Détention",
                        &format!("Les détenus de la prison numéro {batch} {i}."),
                        Some(Lang::Fr),
                    ))
                    .unwrap();
            }
            index.commit().unwrap();
        }
        index.delete("s1", "d0-0").unwrap();
        index.commit().unwrap();
        let before = index.search(&q("détenus ")).unwrap();
        assert!(index.segments() > 1);
        index.merge_segments().unwrap();
        assert_eq!(index.segments(), 1);
        assert_eq!(index.len(), 19);
        let after = index.search(&q("détenus ")).unwrap();
        assert_eq!(after.total, 19);
        assert_eq!(after.total, before.total);
        assert_eq!(after.facets, before.facets);
        // Writes go on after a merge.
        index.delete("s1", "d1-0").unwrap();
        index.commit().unwrap();
        assert_eq!(index.search(&q("détenus ")).unwrap().total, 18);
    }

    #[test]
    fn the_committer_groups_writes_and_drop_commits_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut i = SearchIndex::open(dir.path()).unwrap();
            let errors = Arc::new(Mutex::new(Vec::new()));
            let seen = errors.clone();
            i.commit_within(Duration::from_millis(50), move |e| {
                seen.lock().unwrap().push(e.to_string());
            });
            for n in 0..20 {
                i.upsert(&doc(
                    "s",
                    &format!("d{n}"),
                    "Titre",
                    "Les détenus.",
                    Some(Lang::Fr),
                ))
                .unwrap();
            }
            // Visible without an explicit commit, within the window.
            let deadline = Instant::now() + Duration::from_secs(10);
            while i.len() < 20 {
                assert!(Instant::now() < deadline, "never committed");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(i.pending(), 0);
            assert!(errors.lock().unwrap().is_empty());
            // A write left pending is committed when the index closes.
            i.upsert(&doc("s", "last", "Titre", "Les détenus.", Some(Lang::Fr)))
                .unwrap();
        }
        let i = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(i.len(), 21);
        assert_eq!(i.search(&q("détenus")).unwrap().total, 21);
    }
}
