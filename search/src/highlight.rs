//! Snippets: the excerpt of a hit's text that holds the most query words,
//! with every word that matched marked, whether it matched exactly, with a
//! typo, or as a prefix.
//!
//! tantivy's snippet generator only marks the exact terms of a query, so a
//! search for "protesers" or "Kamp" would show an excerpt without a mark.
//! Here the text is analysed as it was when indexed, and each token is
//! compared with the query's [`Matcher`]s under the same rules the query
//! used.

use tantivy::tokenizer::TokenStream;

use crate::analysis::{self, Lang};

/// One analysed query word and how it may match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// The analysed form (stem).
    pub stem: String,
    /// The edit distance allowed (0, 1 or 2; a transposition counts 1;
    /// the first letter must be the same).
    pub distance: u8,
    /// Whether a longer word starting with the stem matches.
    pub prefix: bool,
}

impl Matcher {
    /// Whether an analysed token of the text matches.
    pub fn matches(&self, token: &str) -> bool {
        token == self.stem
            || (self.prefix && token.starts_with(&self.stem))
            || (self.distance > 0
                && token.chars().next() == self.stem.chars().next()
                && within_distance(&self.stem, token, self.distance))
    }
}

/// The matchers of one query word in `lang`: each stem matches exactly;
/// with typos from 5 letters (1 edit) and 9 letters (2 edits), the first
/// letter kept; as a prefix
/// when it is the last word of the query (which may be unfinished) or has
/// 6 letters or more (a longer word may have a longer stem elsewhere:
/// Portuguese "circunstância" stems to "circunst", "circunstâncias" to
/// "circunstanc").
pub fn matchers(lang: Lang, word: &str, last: bool) -> Vec<Matcher> {
    let mut analyzer = lang.analyzer();
    analysis::tokens(&mut analyzer, word)
        .into_iter()
        .map(|stem| {
            let n = stem.chars().count();
            Matcher {
                distance: match n {
                    9.. => 2,
                    5.. => 1,
                    _ => 0,
                },
                prefix: (last && n >= 2) || n >= 6,
                stem,
            }
        })
        .collect()
}

/// True if `a` and `b` are at most `max` edits apart (insertions,
/// deletions, substitutions, transpositions of adjacent letters), counted
/// in characters.
pub fn within_distance(a: &str, b: &str, max: u8) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let max = usize::from(max);
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    // Optimal string alignment distance, row by row.
    let mut before: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (previous[j] + 1)
                .min(row[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        if row.iter().min().is_some_and(|m| *m > max) {
            return false;
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()] <= max
}

/// Characters in a snippet.
pub const SNIPPET_CHARS: usize = 200;

/// Only this many bytes of a text are scanned for matches.
const SCAN_BYTES: usize = 256 * 1024;

/// Candidate windows tried (each starts at a match).
const WINDOWS: usize = 64;

/// The snippet of `text` (in `lang`) for `matchers`: about
/// [`SNIPPET_CHARS`] characters around the stretch with the most distinct
/// matched words, HTML-escaped, the matched words in `<mark>…</mark>`, and
/// `…` where the text was cut. Without a match, the beginning of the text.
pub fn snippet(lang: Lang, text: &str, matchers: &[Matcher]) -> String {
    Highlighter::new(lang, matchers.to_vec()).snippet(text)
}

/// Snippets of one language for one query, remembering which words of the
/// texts matched (the texts of a page of hits share most of their words).
pub struct Highlighter {
    lang: Lang,
    matchers: Vec<Matcher>,
    seen: std::collections::HashMap<String, bool>,
}

impl Highlighter {
    /// A highlighter of `matchers` in texts of `lang`.
    pub fn new(lang: Lang, matchers: Vec<Matcher>) -> Self {
        Self {
            lang,
            matchers,
            seen: Default::default(),
        }
    }

    fn matches(&mut self, token: &str) -> bool {
        if let Some(m) = self.seen.get(token) {
            return *m;
        }
        let m = self.matchers.iter().any(|m| m.matches(token));
        self.seen.insert(token.to_owned(), m);
        m
    }

    /// The snippet of `text` (see [`snippet`]).
    pub fn snippet(&mut self, text: &str) -> String {
        let lang = self.lang;
        snippet_with(lang, text, |t| self.matches(t))
    }
}

fn snippet_with(lang: Lang, text: &str, mut matches: impl FnMut(&str) -> bool) -> String {
    let mut scan = text.len().min(SCAN_BYTES);
    while !text.is_char_boundary(scan) {
        scan -= 1;
    }
    let mut marks: Vec<(usize, usize, String)> = Vec::new();
    {
        let mut analyzer = lang.analyzer();
        let mut stream = analyzer.token_stream(&text[..scan]);
        while let Some(t) = stream.next() {
            if matches(&t.text) {
                let mark = (t.offset_from, t.offset_to, t.text.clone());
                // Stems added at one position share the word's offsets.
                if marks.last().is_none_or(|l| (l.0, l.1) != (mark.0, mark.1)) {
                    marks.push(mark);
                }
            }
        }
    }
    let Some(first) = marks.first() else {
        let end = advance_chars(text, 0, SNIPPET_CHARS);
        let end = word_end(text, end);
        return render(text, 0, end, &[]);
    };
    // The window that holds the most distinct matched words; the earliest
    // of equals.
    let mut best = (0usize, first.0, advance_chars(text, first.0, SNIPPET_CHARS));
    for (i, m) in marks.iter().enumerate().take(WINDOWS) {
        let end = advance_chars(text, m.0, SNIPPET_CHARS);
        let mut words: Vec<&str> = marks[i..]
            .iter()
            .take_while(|x| x.1 <= end)
            .map(|x| x.2.as_str())
            .collect();
        words.sort_unstable();
        words.dedup();
        if words.len() > best.0 {
            best = (words.len(), m.0, end);
        }
    }
    // Some context before the first match, from a word boundary.
    let back = text[..best.1]
        .char_indices()
        .rev()
        .take(40)
        .last()
        .map_or(best.1, |(i, _)| i);
    let start = if back == 0 {
        0
    } else {
        text[back..best.1]
            .find(char::is_whitespace)
            .map_or(best.1, |i| back + i + 1)
    };
    let end = word_end(
        text,
        advance_chars(text, start, SNIPPET_CHARS).max(best.2.min(text.len())),
    );
    let shown: Vec<(usize, usize)> = marks
        .iter()
        .filter(|m| m.0 >= start && m.1 <= end)
        .map(|m| (m.0, m.1))
        .collect();
    render(text, start, end, &shown)
}

/// The byte offset `n` characters after `from` (or the end).
fn advance_chars(text: &str, from: usize, n: usize) -> usize {
    text[from..]
        .char_indices()
        .nth(n)
        .map_or(text.len(), |(i, _)| from + i)
}

/// `at`, moved back to the end of the word it cuts (unless that leaves
/// nothing).
fn word_end(text: &str, at: usize) -> usize {
    if at >= text.len() || text[at..].starts_with(char::is_whitespace) {
        return at;
    }
    match text[..at].rfind(char::is_whitespace) {
        Some(i) if i > 0 => i,
        _ => at,
    }
}

fn render(text: &str, start: usize, end: usize, marks: &[(usize, usize)]) -> String {
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (from, to) in marks {
        if *from < at {
            continue;
        }
        out.push_str(&escape(&text[at..*from]));
        out.push_str("<mark>");
        out.push_str(&escape(&text[*from..*to]));
        out.push_str("</mark>");
        at = *to;
    }
    out.push_str(&escape(&text[at..end]));
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Escapes text for HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert!(within_distance("protesters", "protesers", 1));
        assert!(within_distance("detention", "detnetion", 1));
        assert!(!within_distance("detention", "retention", 0));
        assert!(within_distance("detention", "retention", 1));
        assert!(!within_distance("liberty", "libertad", 1));
        assert!(within_distance("liberty", "libertad", 2));
        assert!(!within_distance("liberty", "library", 2));
        assert!(within_distance("حرية", "حريه", 1));
    }

    #[test]
    fn exact_typo_and_prefix_matches_are_marked() {
        let text = "Protesters were detained in Kampala after the rally.";
        let mut m = matchers(Lang::En, "protesers", false);
        m.extend(matchers(Lang::En, "Kamp", true));
        assert_eq!(
            snippet(Lang::En, text, &m),
            "<mark>Protesters</mark> were detained in <mark>Kampala</mark> after the rally."
        );
        let m = matchers(Lang::Fr, "détenus", false);
        let s = snippet(Lang::Fr, "Les détenus de Makala <b>.", &m);
        assert_eq!(s, "Les <mark>détenus</mark> de Makala &lt;b&gt;.");
    }

    #[test]
    fn the_window_holds_the_most_matches_and_shows_its_cuts() {
        let filler = "lorem ipsum dolor sit amet ".repeat(20);
        let text = format!("prison {filler} prison centrale de Makala {filler}");
        let mut m = matchers(Lang::Fr, "prison", false);
        m.extend(matchers(Lang::Fr, "centrale", false));
        let s = snippet(Lang::Fr, &text, &m);
        assert!(s.starts_with('…'), "{s}");
        assert!(s.ends_with('…'), "{s}");
        assert!(
            s.contains("<mark>prison</mark> <mark>centrale</mark>"),
            "{s}"
        );
        assert!(s.chars().count() < SNIPPET_CHARS + 80, "{s}");
        let none = snippet(Lang::Fr, &text, &[]);
        assert!(none.starts_with("prison lorem") && !none.contains("<mark>"));
    }
}
