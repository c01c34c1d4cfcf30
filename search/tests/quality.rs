//! Retrieval quality on the UDHR in eleven languages.
//!
//! All 330 articles (30 per language) are indexed with their language. For
//! each language and each article, the query is made of the article's three
//! most distinctive words (longest among those that occur in the fewest
//! articles of that language, at least five letters long), each put into
//! another inflected form where the language has one: plural and singular
//! swapped (French, English, Spanish, Portuguese), `-en` added or removed
//! (German, Dutch), the article `ال` added or removed (Arabic), the
//! noun-class or verbal prefix changed (Swahili, Lingala, Kirundi, Luganda:
//! see [`bantu`]). The query is searched with the
//! language filter, and the article's rank gives recall@1, recall@3 and the
//! mean reciprocal rank (over the top 10).

use std::collections::BTreeMap;

use amicus_fixtures::{UdhrLanguage, udhr};
use amicus_search::{DocKind, Lang, PublicDocument, SearchIndex, SearchQuery};

fn lang(l: UdhrLanguage) -> Lang {
    Lang::from_code(l.code()).expect("every fixture language is indexed")
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Another inflected form of `word` in `lang`, where the language has one
/// (adverbs, which do not inflect, stay as they are).
fn inflect(lang: Lang, word: &str) -> String {
    let w = word.to_owned();
    let swap = |pairs: &[(&str, &str)]| {
        pairs.iter().find_map(|(a, b)| {
            w.strip_suffix(a)
                .map(|s| format!("{s}{b}"))
                .or_else(|| w.strip_suffix(b).map(|s| format!("{s}{a}")))
        })
    };
    match lang {
        Lang::Fr if w.ends_with("ment") => w,
        Lang::Fr => swap(&[("aux", "al")]).unwrap_or_else(|| match w.strip_suffix('s') {
            Some(stem) => stem.to_owned(),
            None => w.clone() + "s",
        }),
        Lang::En if w.ends_with("ly") => w,
        Lang::En => swap(&[("ies", "y")]).unwrap_or_else(|| match w.strip_suffix('s') {
            Some(stem) => stem.to_owned(),
            None => w.clone() + "s",
        }),
        Lang::Es | Lang::Pt if w.ends_with("mente") => w,
        Lang::Es | Lang::Pt => swap(&[("ciones", "ción"), ("ções", "ção"), ("ões", "ão")])
            .unwrap_or_else(|| match w.strip_suffix('s') {
                Some(stem) => stem.to_owned(),
                None if w.ends_with(['a', 'e', 'i', 'o', 'u']) => w.clone() + "s",
                None => w.clone() + "es",
            }),
        Lang::De | Lang::Nl => match w.strip_suffix("en") {
            Some(stem) => stem.to_owned(),
            None if lang == Lang::De && w.ends_with('e') => w + "n",
            None => w + "en",
        },
        // The article (alone or after a conjunction or preposition) comes
        // off; a bare word takes it.
        Lang::Ar => match ["وال", "بال", "كال", "فال", "لل", "ال"]
            .iter()
            .find_map(|p| w.strip_prefix(p))
        {
            Some(stem) => stem.to_owned(),
            None => format!("ال{w}"),
        },
        Lang::Sw | Lang::Ln | Lang::Rn | Lang::Lg => bantu(lang, &w),
    }
}

/// Swahili, Lingala, Kirundi and Luganda inflect at the front: a noun
/// changes its class prefix between singular and plural (Swahili *mtu* /
/// *watu*, *kitabu* / *vitabu*; Kirundi *igihugu* / *ibihugu*; Luganda
/// *omuntu* / *abantu*; Lingala *moto* / *bato*), a verb its subject or
/// tense prefix (Swahili *kulinda* "to protect" / *wanalinda* "they
/// protect"; Kirundi and Luganda *ategerezwa* / *bategerezwa*, "he / they
/// must"). The first rule that fits is used (a rule marked as verbal only
/// for a word ending in *-a*, as verbs do); a word no rule fits stays as it
/// is. The rules are the regular patterns: a noun with no plural class may
/// get a form no speaker would write.
fn bantu(lang: Lang, w: &str) -> String {
    const VERB: bool = true;
    let rules: &[(&str, &str, bool)] = match lang {
        Lang::Sw => &[
            ("ku", "wana", VERB),
            ("wame", "ku", VERB),
            ("wana", "ku", VERB),
            ("ame", "ku", VERB),
            ("ana", "ku", VERB),
            ("ki", "vi", false),
            ("vi", "ki", false),
            ("wa", "m", false),
            ("mw", "wa", false),
            ("mi", "m", false),
            ("m", "wa", false),
        ],
        Lang::Ln => &[
            ("ko", "ba", VERB),
            ("mo", "ba", false),
            ("ba", "mo", false),
            ("li", "ma", false),
            ("ma", "li", false),
            ("bi", "e", false),
        ],
        Lang::Rn => &[
            ("kw", "baw", VERB),
            ("ku", "ba", VERB),
            ("gu", "ba", VERB),
            ("umu", "aba", false),
            ("aba", "umu", false),
            ("igi", "ibi", false),
            ("iki", "ibi", false),
            ("ibi", "iki", false),
            ("iri", "ama", false),
            ("ama", "iri", false),
            ("imi", "umu", false),
            ("aga", "utu", false),
            ("ba", "a", VERB),
            ("a", "ba", VERB),
        ],
        Lang::Lg => &[
            ("okw", "baw", VERB),
            ("oku", "ba", VERB),
            ("omu", "aba", false),
            ("aba", "omu", false),
            ("eki", "ebi", false),
            ("ebi", "eki", false),
            ("emi", "omu", false),
            ("ama", "eri", false),
            ("ba", "a", VERB),
            ("a", "ba", VERB),
        ],
        _ => &[],
    };
    rules
        .iter()
        .filter(|(_, _, verb)| !verb || w.ends_with('a'))
        .find_map(|(from, to, _)| {
            w.strip_prefix(from)
                .filter(|rest| rest.chars().count() >= 3)
                .map(|rest| format!("{to}{rest}"))
        })
        .unwrap_or_else(|| w.to_owned())
}

#[derive(Default)]
struct Score {
    queries: usize,
    words: usize,
    inflected: usize,
    at1: usize,
    at3: usize,
    rr: f64,
}

#[test]
fn recall_and_mrr_per_language_on_the_udhr() {
    let index = SearchIndex::in_memory().unwrap();
    let mut corpus = BTreeMap::new();
    for l in UdhrLanguage::ALL {
        let (_, articles) = udhr(l);
        for a in &articles {
            index
                .upsert(&PublicDocument {
                    space: "udhr".into(),
                    id: format!("{}-{}", l.code(), a.number),
                    title: a.heading.clone(),
                    body: a.text.clone(),
                    language: Some(lang(l)),
                    kind: DocKind::Document,
                    year: Some(1948),
                })
                .unwrap();
        }
        corpus.insert(l, articles);
    }
    index.commit().unwrap();

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (l, articles) in &corpus {
        let lg = lang(*l);
        let mut df: BTreeMap<String, usize> = BTreeMap::new();
        for a in articles {
            let mut seen: Vec<String> = words(&a.text);
            seen.sort();
            seen.dedup();
            for w in seen {
                *df.entry(w).or_default() += 1;
            }
        }
        let mut score = Score::default();
        for a in articles {
            let mut candidates: Vec<(usize, std::cmp::Reverse<usize>, usize, String)> =
                words(&a.text)
                    .into_iter()
                    .enumerate()
                    .filter(|(_, w)| w.chars().count() >= 5)
                    .map(|(i, w)| (df[&w], std::cmp::Reverse(w.chars().count()), i, w))
                    .collect();
            candidates.sort();
            let mut taken = std::collections::BTreeSet::new();
            candidates.retain(|c| taken.insert(c.3.clone()));
            let query: Vec<String> = candidates
                .iter()
                .take(3)
                .map(|(_, _, _, w)| {
                    let form = inflect(lg, w);
                    score.words += 1;
                    score.inflected += usize::from(form != *w);
                    form
                })
                .collect();
            let results = index
                .search(&SearchQuery {
                    text: query.join(" ") + " ",
                    languages: vec![lg],
                    limit: 10,
                    ..Default::default()
                })
                .unwrap();
            let expected = format!("{}-{}", l.code(), a.number);
            let rank = results.hits.iter().position(|h| h.id == expected);
            if rank != Some(0) && std::env::var_os("AMICUS_QUALITY_DEBUG").is_some() {
                println!(
                    "{expected}: {:?} -> {:?}",
                    query,
                    results
                        .hits
                        .iter()
                        .take(3)
                        .map(|h| &h.id)
                        .collect::<Vec<_>>()
                );
            }
            score.queries += 1;
            if rank == Some(0) {
                score.at1 += 1;
            }
            if rank.is_some_and(|r| r < 3) {
                score.at3 += 1;
            }
            score.rr += rank.map_or(0.0, |r| 1.0 / (r as f64 + 1.0));
        }
        let n = score.queries as f64;
        let (r1, r3, mrr) = (score.at1 as f64 / n, score.at3 as f64 / n, score.rr / n);
        report.push(format!(
            "{:<3} queries {:>2}  words inflected {:>2}/{:<2}  recall@1 {:.3}  recall@3 {:.3}  MRR {:.3}",
            l.code(),
            score.queries,
            score.inflected,
            score.words,
            r1,
            r3,
            mrr
        ));
        // The target of the seven languages with a stemmer holds for the
        // four Bantu languages too (their prefix analysis lifted Swahili and
        // Lingala from 0.900, Kirundi and Luganda from 0.967, to 1.000).
        if r1 < 0.9 {
            failures.push(format!("{}: recall@1 {r1:.3} < 0.9", l.code()));
        }
    }
    println!("UDHR retrieval quality (inflected queries, language filter):");
    for line in &report {
        println!("  {line}");
    }
    assert!(
        failures.is_empty(),
        "below target: {failures:?}\n{}",
        report.join("\n")
    );
}
