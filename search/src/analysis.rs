//! Languages, their text analysis, and language detection.
//!
//! - French, English, German, Portuguese, Spanish, Dutch: Unicode word
//!   tokens, lower case, the language's stop words, its Snowball stemmer,
//!   then ASCII folding (so "Déclaration" and "declaration" meet; the
//!   stemmer still sees the accents it expects).
//! - Arabic: Arabic normalization ([`ArabicNormalizer`]: diacritics and
//!   tatweel removed, alef forms to bare alef, ta marbuta to ha, alef maqsura
//!   to ya) then light prefix and suffix stripping ([`ArabicLightStemmer`],
//!   after Larkey's "light10").
//! - Swahili, Lingala, Kirundi, Luganda: no Snowball stemmer exists for
//!   these Bantu languages, which inflect at the front of the word (noun
//!   class prefixes: Swahili *mtu* / *watu*; subject and tense prefixes on
//!   verbs: *kulinda* / *wanalinda*). [`BantuPrefixes`] keeps each word and
//!   adds, at the same position, the word without its longest noun-class
//!   prefix and without its longest subject + tense prefix, so the forms of
//!   one stem meet; then lower case and ASCII folding.

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

/// A language the index analyses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lang {
    /// French.
    Fr,
    /// English.
    En,
    /// Arabic.
    Ar,
    /// German.
    De,
    /// Portuguese.
    Pt,
    /// Spanish.
    Es,
    /// Dutch.
    Nl,
    /// Swahili.
    Sw,
    /// Lingala.
    Ln,
    /// Kirundi.
    Rn,
    /// Luganda.
    Lg,
}

impl Lang {
    /// Every language.
    pub const ALL: [Self; 11] = [
        Self::Fr,
        Self::En,
        Self::Ar,
        Self::De,
        Self::Pt,
        Self::Es,
        Self::Nl,
        Self::Sw,
        Self::Ln,
        Self::Rn,
        Self::Lg,
    ];

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Fr => "fr",
            Self::En => "en",
            Self::Ar => "ar",
            Self::De => "de",
            Self::Pt => "pt",
            Self::Es => "es",
            Self::Nl => "nl",
            Self::Sw => "sw",
            Self::Ln => "ln",
            Self::Rn => "rn",
            Self::Lg => "lg",
        }
    }

    /// Parses a two-letter code (or a longer tag such as `pt-PT`).
    pub fn from_code(code: &str) -> Option<Self> {
        let primary = code.split(['-', '_']).next()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.code() == primary)
    }

    fn snowball(self) -> Option<Language> {
        Some(match self {
            Self::Fr => Language::French,
            Self::En => Language::English,
            Self::De => Language::German,
            Self::Pt => Language::Portuguese,
            Self::Es => Language::Spanish,
            Self::Nl => Language::Dutch,
            Self::Ar | Self::Sw | Self::Ln | Self::Rn | Self::Lg => return None,
        })
    }

    /// The name of this language's analyzer in the index.
    pub fn analyzer_name(self) -> String {
        format!("amicus_{}", self.code())
    }

    /// The analyzer of this language (built once, then cloned: a clone
    /// shares the stop-word set).
    pub fn analyzer(self) -> TextAnalyzer {
        static BUILT: std::sync::OnceLock<Vec<TextAnalyzer>> = std::sync::OnceLock::new();
        let built = BUILT.get_or_init(|| Self::ALL.iter().map(|l| l.build_analyzer()).collect());
        let i = Self::ALL
            .iter()
            .position(|l| *l == self)
            .expect("every language is in ALL");
        built[i].clone()
    }

    /// The script of this language's words.
    pub fn is_arabic_script(self) -> bool {
        self == Self::Ar
    }

    fn build_analyzer(self) -> TextAnalyzer {
        let base = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(64))
            .filter(LowerCaser);
        match (self, self.snowball()) {
            (Self::Ar, _) => base
                .filter(ArabicNormalizer)
                .filter(ArabicLightStemmer)
                .build(),
            (_, Some(lang)) => match StopWordFilter::new(lang) {
                Some(stop) => base
                    .filter(stop)
                    .filter(Stemmer::new(lang))
                    .filter(AsciiFoldingFilter)
                    .build(),
                None => base
                    .filter(Stemmer::new(lang))
                    .filter(AsciiFoldingFilter)
                    .build(),
            },
            (Self::Sw | Self::Ln | Self::Rn | Self::Lg, None) => base
                .filter(BantuPrefixes(self))
                .filter(AsciiFoldingFilter)
                .build(),
            (_, None) => base.filter(AsciiFoldingFilter).build(),
        }
    }
}

/// The tokens of `text` under an analyzer with their positions, the first
/// token of each position only (the word itself where a filter adds stems
/// at its position).
pub fn positioned_tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(t) = stream.next() {
        if out.last().is_none_or(|(p, _)| *p != t.position) {
            out.push((t.position, t.text.clone()));
        }
    }
    out
}

/// The tokens of `text` under an analyzer.
pub fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(t) = stream.next() {
        out.push(t.text.clone());
    }
    out
}

/// Normalizes Arabic spelling variants so that they match: removes the
/// harakat (U+064B–U+0652), the superscript alef (U+0670) and tatweel
/// (U+0640); maps alef with hamza above or below and alef with madda to bare
/// alef; ta marbuta to ha; alef maqsura to ya. Other text passes unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArabicNormalizer;

/// Light Arabic stemming: strips the conjunction و and the article forms
/// (ال وال بال كال فال لل) when at least two letters remain, then one of the
/// common suffixes (ها ان ات ون ين يه ية ه ة ي) while at least two letters
/// remain. Runs after [`ArabicNormalizer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ArabicLightStemmer;

/// Normalizes one Arabic word (see [`ArabicNormalizer`]).
pub fn normalize_arabic(word: &str) -> String {
    word.chars()
        .filter_map(|c| match c {
            '\u{064B}'..='\u{0652}' | '\u{0670}' | '\u{0640}' => None,
            'أ' | 'إ' | 'آ' => Some('ا'),
            'ة' => Some('ه'),
            'ى' => Some('ي'),
            c => Some(c),
        })
        .collect()
}

/// True for a letter of the Arabic block (U+0600–U+06FF).
pub fn is_arabic(c: char) -> bool {
    ('\u{0600}'..='\u{06FF}').contains(&c)
}

/// Stems one normalized Arabic word (see [`ArabicLightStemmer`]).
pub fn stem_arabic(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    if !chars.iter().any(|c| is_arabic(*c)) {
        return word.to_owned();
    }
    let mut w: &[char] = &chars;
    if w.len() > 3 && w[0] == 'و' {
        w = &w[1..];
    }
    const PREFIXES: [&str; 6] = ["وال", "بال", "كال", "فال", "ال", "لل"];
    for p in PREFIXES {
        let p: Vec<char> = p.chars().collect();
        if w.len() >= p.len() + 2 && w.starts_with(&p) {
            w = &w[p.len()..];
            break;
        }
    }
    // After normalization ية is يه and ة is ه.
    const SUFFIXES: [&str; 8] = ["ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي"];
    let mut changed = true;
    while changed {
        changed = false;
        for s in SUFFIXES {
            let s: Vec<char> = s.chars().collect();
            if w.len() >= s.len() + 2 && w.ends_with(&s) {
                w = &w[..w.len() - s.len()];
                changed = true;
                break;
            }
        }
    }
    w.iter().collect()
}

macro_rules! word_filter {
    ($filter:ident, $tokenizer:ident, $stream:ident, $f:expr) => {
        /// The tokenizer wrapping an inner one with this filter.
        #[derive(Clone)]
        pub struct $tokenizer<T>(T);

        /// The token stream of this filter.
        pub struct $stream<S>(S);

        impl TokenFilter for $filter {
            type Tokenizer<T: Tokenizer> = $tokenizer<T>;
            fn transform<T: Tokenizer>(self, tokenizer: T) -> $tokenizer<T> {
                $tokenizer(tokenizer)
            }
        }

        impl<T: Tokenizer> Tokenizer for $tokenizer<T> {
            type TokenStream<'a> = $stream<T::TokenStream<'a>>;
            fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
                $stream(self.0.token_stream(text))
            }
        }

        impl<S: TokenStream> TokenStream for $stream<S> {
            fn advance(&mut self) -> bool {
                while self.0.advance() {
                    let token: &mut Token = self.0.token_mut();
                    let changed: String = $f(&token.text);
                    if !changed.is_empty() {
                        token.text = changed;
                        return true;
                    }
                }
                false
            }
            fn token(&self) -> &Token {
                self.0.token()
            }
            fn token_mut(&mut self) -> &mut Token {
                self.0.token_mut()
            }
        }
    };
}

word_filter!(
    ArabicNormalizer,
    ArabicNormalizerTokenizer,
    ArabicNormalizerStream,
    normalize_arabic
);
word_filter!(
    ArabicLightStemmer,
    ArabicStemmerTokenizer,
    ArabicStemmerStream,
    stem_arabic
);

/// The prefixes of a Bantu language: noun-class prefixes (with the
/// initial vowel, the augment, where the language has one), and the
/// subject and tense prefixes of verbs (a verb's prefix is a subject
/// followed by a tense, or the tense may be absent).
struct Prefixes {
    nouns: &'static [&'static str],
    subjects: &'static [&'static str],
    tenses: &'static [&'static str],
}

fn prefixes(lang: Lang) -> Option<&'static Prefixes> {
    const SW: Prefixes = Prefixes {
        nouns: &[
            "wa", "mw", "m", "mi", "ki", "vi", "ch", "vy", "ma", "ji", "u", "ku", "kw", "pa",
        ],
        subjects: &[
            "ni", "u", "a", "tu", "m", "wa", "ki", "vi", "i", "zi", "li", "ya", "ku", "pa",
        ],
        tenses: &["na", "li", "ta", "me", "ki", "ka", "nge"],
    };
    const LN: Prefixes = Prefixes {
        nouns: &["mo", "ba", "mi", "li", "ma", "e", "bi", "lo", "bo", "ko"],
        subjects: &[
            "na", "o", "a", "to", "bo", "ba", "e", "mi", "li", "ma", "bi", "lo", "ko",
        ],
        tenses: &["ko", "ka"],
    };
    const RN: Prefixes = Prefixes {
        nouns: &[
            "umu", "aba", "imi", "iri", "ama", "iki", "igi", "ibi", "ivy", "uru", "aka", "aga",
            "utu", "ubu", "uku", "ku", "kw", "gu", "mu", "ba", "mi", "ri", "ma", "ki", "gi", "bi",
            "vy", "ru", "ka", "tu", "bu",
        ],
        subjects: &[
            "n", "u", "a", "tu", "mu", "ba", "ri", "ya", "ki", "bi", "vy", "i", "zi", "ru", "ka",
            "bu", "ku",
        ],
        tenses: &["ra", "a", "zo", "ka"],
    };
    const LG: Prefixes = Prefixes {
        nouns: &[
            "omu", "aba", "emi", "eri", "ama", "eki", "ebi", "olu", "aka", "obu", "oku", "okw",
            "ogu", "aga", "otu", "mu", "ba", "mi", "ma", "ki", "bi", "lu", "ka", "bu", "ku",
        ],
        subjects: &[
            "n", "o", "a", "tu", "mu", "ba", "gu", "gi", "li", "ga", "ki", "bi", "e", "zi", "lu",
            "ka", "bu", "ku",
        ],
        tenses: &["na", "ja", "li", "aa", "a"],
    };
    match lang {
        Lang::Sw => Some(&SW),
        Lang::Ln => Some(&LN),
        Lang::Rn => Some(&RN),
        Lang::Lg => Some(&LG),
        _ => None,
    }
}

/// A stem keeps at least this many letters after a prefix comes off.
const BANTU_MIN_STEM: usize = 4;

/// The stems of a lower-case Bantu word besides the word itself: the word
/// without its longest noun-class prefix, and without its longest subject
/// (+ tense) prefix, where at least four letters remain. At most two,
/// distinct, none equal to the word.
pub fn bantu_stems(lang: Lang, word: &str) -> Vec<String> {
    let Some(p) = prefixes(lang) else {
        return Vec::new();
    };
    let strip = |prefix_len: usize| {
        let rest = &word[prefix_len..];
        (rest.chars().count() >= BANTU_MIN_STEM).then(|| rest.to_owned())
    };
    let noun = p
        .nouns
        .iter()
        .filter(|n| word.starts_with(**n))
        .map(|n| n.len())
        .max()
        .and_then(strip);
    let verb = p
        .subjects
        .iter()
        .filter(|s| word.starts_with(**s))
        .flat_map(|s| {
            let after = &word[s.len()..];
            std::iter::once(s.len()).chain(
                p.tenses
                    .iter()
                    .filter(move |t| after.starts_with(**t))
                    .map(move |t| s.len() + t.len()),
            )
        })
        .filter(|len| word.len() - len >= BANTU_MIN_STEM)
        .max()
        .and_then(strip);
    let mut out = Vec::new();
    for stem in [noun, verb].into_iter().flatten() {
        if !out.contains(&stem) {
            out.push(stem);
        }
    }
    out
}

/// Adds the stems of [`bantu_stems`] after each word, at the word's
/// position (as synonyms are added), for one of Swahili, Lingala, Kirundi
/// and Luganda; other languages pass unchanged. Runs after lower-casing.
#[derive(Clone, Copy, Debug)]
pub struct BantuPrefixes(pub Lang);

/// The tokenizer wrapping an inner one with [`BantuPrefixes`].
#[derive(Clone)]
pub struct BantuPrefixesTokenizer<T> {
    inner: T,
    lang: Lang,
}

/// The token stream of [`BantuPrefixes`].
pub struct BantuPrefixesStream<S> {
    inner: S,
    lang: Lang,
    current: Token,
    pending: Vec<String>,
}

impl TokenFilter for BantuPrefixes {
    type Tokenizer<T: Tokenizer> = BantuPrefixesTokenizer<T>;
    fn transform<T: Tokenizer>(self, tokenizer: T) -> BantuPrefixesTokenizer<T> {
        BantuPrefixesTokenizer {
            inner: tokenizer,
            lang: self.0,
        }
    }
}

impl<T: Tokenizer> Tokenizer for BantuPrefixesTokenizer<T> {
    type TokenStream<'a> = BantuPrefixesStream<T::TokenStream<'a>>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        BantuPrefixesStream {
            inner: self.inner.token_stream(text),
            lang: self.lang,
            current: Token::default(),
            pending: Vec::new(),
        }
    }
}

impl<S: TokenStream> TokenStream for BantuPrefixesStream<S> {
    fn advance(&mut self) -> bool {
        if let Some(stem) = self.pending.pop() {
            self.current.text = stem;
            return true;
        }
        if !self.inner.advance() {
            return false;
        }
        self.current = self.inner.token().clone();
        self.pending = bantu_stems(self.lang, &self.current.text);
        self.pending.reverse();
        true
    }
    fn token(&self) -> &Token {
        &self.current
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// Frequent function words of the four Bantu languages (none of which
/// whatlang knows), used to recognise them.
const BANTU_MARKERS: [(Lang, &[&str]); 4] = [
    (
        Lang::Sw,
        &[
            "na", "ya", "wa", "kwa", "katika", "ni", "za", "kila", "mtu", "haki", "au", "hii",
        ],
    ),
    (
        Lang::Ln,
        &[
            "na", "ya", "mpe", "ezali", "te", "moto", "nyonso", "bato", "to", "ete", "mpo", "oyo",
        ],
    ),
    (
        Lang::Rn,
        &[
            "mu",
            "ku",
            "canke",
            "umuntu",
            "wese",
            "afise",
            "uburenganzira",
            "kandi",
            "iyo",
            "ivyo",
            "kugira",
            "bose",
        ],
    ),
    (
        Lang::Lg,
        &[
            "mu", "era", "buli", "omuntu", "oba", "eddembe", "okuba", "ku", "nti", "by", "kyonna",
            "abantu",
        ],
    ),
];

/// Detects the language of a text among the eleven, or `None` when unsure.
///
/// The `whatlang` crate (trigram profiles, pure Rust, no model files) covers
/// French, English, Arabic, German, Portuguese, Spanish and Dutch; it does
/// not know Swahili, Lingala, Kirundi or Luganda, so those are recognised by
/// the share of their frequent function words first.
pub fn detect(text: &str) -> Option<Lang> {
    detect_with(text, false)
}

/// The languages of a text written in several, paragraph by paragraph
/// (a paragraph is a line): each paragraph goes to the language it is
/// written in when that is known with confidence (another script than
/// `main`'s, or a reliable detection), else to `main`. Returns the text of
/// each language, its paragraphs joined by line breaks, `main` first.
pub fn by_language(text: &str, main: Lang) -> Vec<(Lang, String)> {
    let mut out: Vec<(Lang, String)> = vec![(main, String::new())];
    // A text of one paragraph is in the language declared or detected for
    // it: only another script moves it.
    let several = text
        .split('\n')
        .filter(|p| !p.trim().is_empty())
        .nth(1)
        .is_some();
    for paragraph in text.split('\n') {
        if paragraph.trim().is_empty() {
            continue;
        }
        let lang = paragraph_language(paragraph, main, several);
        let i = match out.iter().position(|(l, _)| *l == lang) {
            Some(i) => i,
            None => {
                out.push((lang, String::new()));
                out.len() - 1
            }
        };
        let part = &mut out[i].1;
        if !part.is_empty() {
            part.push('\n');
        }
        part.push_str(paragraph);
    }
    out
}

/// The language of one paragraph of a text in `main`: `main` unless the
/// paragraph is in the other script (Arabic letters in a Latin-script
/// text or the reverse), or, with `same_script`, reliably detected as
/// another language of the same script.
pub fn paragraph_language(paragraph: &str, main: Lang, same_script: bool) -> Lang {
    let (mut arabic, mut other) = (0usize, 0usize);
    for c in paragraph.chars().filter(|c| c.is_alphabetic()) {
        if is_arabic(c) {
            arabic += 1;
        } else {
            other += 1;
        }
    }
    if arabic + other == 0 {
        return main;
    }
    let arabic_script = arabic > other;
    if arabic_script != main.is_arabic_script() {
        // Another script: certain. Its language is detected among those
        // written in it, English when unsure (as for a whole text).
        return match detect(paragraph) {
            Some(l) if l.is_arabic_script() == arabic_script => l,
            _ if arabic_script => Lang::Ar,
            _ => Lang::En,
        };
    }
    if !same_script {
        return main;
    }
    detect_with(paragraph, true).unwrap_or(main)
}

/// [`detect`]; with `reliable`, `None` unless the detection is reliable
/// (whatlang's own confidence test; at least 8 words for the function
/// words of the Bantu languages).
fn detect_with(text: &str, reliable: bool) -> Option<Lang> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if !words.is_empty() {
        let best = BANTU_MARKERS
            .iter()
            .map(|(lang, markers)| {
                let hits = words
                    .iter()
                    .filter(|w| markers.contains(&w.as_str()))
                    .count();
                (hits as f64 / words.len() as f64, *lang)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((share, lang)) = best
            && share >= 0.12
            && (!reliable || words.len() >= 8)
        {
            return Some(lang);
        }
    }
    let info = whatlang::detect(text)?;
    if reliable && !info.is_reliable() {
        return None;
    }
    Some(match info.lang() {
        whatlang::Lang::Fra => Lang::Fr,
        whatlang::Lang::Eng => Lang::En,
        whatlang::Lang::Ara => Lang::Ar,
        whatlang::Lang::Deu => Lang::De,
        whatlang::Lang::Por => Lang::Pt,
        whatlang::Lang::Spa => Lang::Es,
        whatlang::Lang::Nld => Lang::Nl,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_go_to_their_own_language() {
        let text = "Les avocats ont été arrêtés à Bujumbura pendant une audience publique.\n\
                    \n\
                    واعتقلت الشرطة المحامين أثناء الجلسة وصادرت ملفات الدفاع.\n\
                    The lawyers were detained for three weeks without any charge being brought against them.\n\
                    Merci.\n\
                    Le tribunal a refusé de les entendre.";
        let parts = by_language(text, Lang::Fr);
        let langs: Vec<Lang> = parts.iter().map(|(l, _)| *l).collect();
        assert_eq!(langs, vec![Lang::Fr, Lang::Ar, Lang::En]);
        // A word too short to tell stays in the text's language.
        assert!(parts[0].1.contains("Merci."), "{parts:?}");
        assert!(parts[0].1.ends_with("de les entendre."), "{parts:?}");
        assert!(parts[1].1.starts_with("واعتقلت"), "{parts:?}");
        // Latin letters in an Arabic text: another script, so certain.
        assert_eq!(
            paragraph_language(
                "Cour africaine des droits de l'homme et des peuples",
                Lang::Ar,
                false
            ),
            Lang::Fr
        );
        assert_eq!(paragraph_language("123 456", Lang::Ar, true), Lang::Ar);
        // One paragraph: its language is the text's, unless another script.
        let english = "The lawyers were detained for three weeks without any charge being brought against them.";
        assert_eq!(
            by_language(english, Lang::Fr),
            vec![(Lang::Fr, english.to_owned())]
        );
    }

    fn run(lang: Lang, text: &str) -> Vec<String> {
        tokens(&mut lang.analyzer(), text)
    }

    #[test]
    fn european_analysis_stems_and_ignores_accents() {
        assert_eq!(run(Lang::Fr, "Détenus"), run(Lang::Fr, "detenus"));
        assert_eq!(run(Lang::Fr, "détention"), run(Lang::Fr, "DETENTION"));
        assert_eq!(run(Lang::Fr, "libertés"), run(Lang::Fr, "Liberté"));
        assert_eq!(run(Lang::En, "rights"), run(Lang::En, "right"));
        assert_eq!(run(Lang::Es, "derechos"), run(Lang::Es, "derecho"));
        assert_eq!(run(Lang::De, "Rechte"), run(Lang::De, "Recht"));
        assert!(run(Lang::Fr, "les de la").is_empty(), "stop words");
    }

    #[test]
    fn arabic_normalization_covers_diacritics_alef_ta_marbuta_maqsura_and_tatweel() {
        assert_eq!(normalize_arabic("أَحْرَارًا"), "احرارا");
        assert_eq!(normalize_arabic("إعلان"), "اعلان");
        assert_eq!(normalize_arabic("آمن"), "امن");
        assert_eq!(normalize_arabic("الكرامة"), "الكرامه");
        assert_eq!(normalize_arabic("مستوى"), "مستوي");
        assert_eq!(normalize_arabic("حـــقوق"), "حقوق");
        // The article and the conjunction go; the root stays.
        assert_eq!(run(Lang::Ar, "والحقوق"), run(Lang::Ar, "حقوق"));
        assert_eq!(run(Lang::Ar, "الحرية"), run(Lang::Ar, "حرية"));
        assert_eq!(run(Lang::Ar, "بالكرامة"), run(Lang::Ar, "كرامة"));
    }

    #[test]
    fn bantu_forms_of_one_stem_meet() {
        let shares = |lang: Lang, a: &str, b: &str| {
            let (a, b) = (run(lang, a), run(lang, b));
            a.iter().any(|t| b.contains(t))
        };
        assert!(shares(Lang::Sw, "kulinda", "wanalinda"));
        assert!(shares(Lang::Sw, "uhuru", "huru"));
        assert!(shares(Lang::Rn, "ategerezwa", "bategerezwa"));
        assert!(shares(Lang::Rn, "igihugu", "ibihugu"));
        assert!(shares(Lang::Lg, "okukuuma", "bakuuma"));
        assert!(shares(Lang::Lg, "ekitundu", "ebitundu"));
        assert!(shares(Lang::Ln, "kozala", "akozala"));
        // The word itself stays, at the same position as its stems.
        let mut a = Lang::Sw.analyzer();
        let mut stream = a.token_stream("watoto wanalinda");
        let mut seen = Vec::new();
        while let Some(t) = stream.next() {
            seen.push((t.text.clone(), t.position));
        }
        assert!(seen.contains(&("wanalinda".into(), 1)), "{seen:?}");
        assert!(seen.contains(&("linda".into(), 1)), "{seen:?}");
        // Short words keep their prefix: "mtu" is not "tu".
        assert_eq!(run(Lang::Sw, "mtu"), vec!["mtu"]);
        assert!(bantu_stems(Lang::Fr, "maison").is_empty());
    }

    #[test]
    fn languages_are_detected() {
        let cases = [
            (
                Lang::Fr,
                "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
            ),
            (
                Lang::En,
                "All human beings are born free and equal in dignity and rights.",
            ),
            (
                Lang::Ar,
                "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق.",
            ),
            (
                Lang::De,
                "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
            ),
            (
                Lang::Es,
                "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
            ),
            (
                Lang::Sw,
                "Watu wote wamezaliwa huru, hadhi na haki zao ni sawa. Wote wamejaliwa akili na dhamiri, hivyo yapasa watendeane kindugu.",
            ),
        ];
        for (lang, text) in cases {
            assert_eq!(detect(text), Some(lang), "{text}");
        }
    }
}
