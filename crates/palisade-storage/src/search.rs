//! Full-text search of room events: the query a backend answers (its own index and syntax
//! behind it) and what it finds.

use ruma::OwnedRoomId;

use crate::EventRow;

/// What a search term asks for: alternatives (`or`), each a set of phrases that must all
/// appear and phrases that must not. Parsed the way Synapse reads a term: words match as
/// prefixes, `"quoted words"` as a phrase, `-word` excludes, `or` separates alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchTerms {
    /// The alternatives; an event matches if any does.
    pub any_of: Vec<SearchClause>,
}

/// One alternative of a [`SearchTerms`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchClause {
    /// Phrases that must all appear.
    pub all: Vec<SearchPhrase>,
    /// Phrases that must not appear.
    pub none: Vec<SearchPhrase>,
}

/// A word or words in a row, in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPhrase {
    /// The words.
    pub words: Vec<String>,
    /// Whether the last word may be the start of a longer word.
    pub prefix: bool,
}

impl SearchTerms {
    /// Parses what a user typed; words are split at anything not a letter or digit, as the
    /// index splits text.
    pub fn parse(term: &str) -> Self {
        let mut terms = Self::default();
        let mut clause = SearchClause::default();
        let mut rest = term;
        while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
            rest = &rest[start..];
            let (token, quoted, next) = match rest.strip_prefix('"') {
                Some(inner) => match inner.find('"') {
                    Some(end) => (&inner[..end], true, &inner[end + 1..]),
                    None => (inner, true, ""),
                },
                None => {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    (&rest[..end], false, &rest[end..])
                }
            };
            rest = next;
            if !quoted && token.eq_ignore_ascii_case("or") {
                terms.push(std::mem::take(&mut clause));
                continue;
            }
            let (negated, token) = match token.strip_prefix('-') {
                Some(word) if !quoted => (true, word),
                _ => (false, token),
            };
            let words: Vec<String> = token
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            if words.is_empty() {
                continue;
            }
            let phrase = SearchPhrase { words, prefix: !quoted && !negated };
            if negated { clause.none.push(phrase) } else { clause.all.push(phrase) }
        }
        terms.push(clause);
        terms
    }

    /// Adds an alternative, unless it asks for nothing (exclusions alone match nothing).
    fn push(&mut self, clause: SearchClause) {
        if !clause.all.is_empty() {
            self.any_of.push(clause);
        }
    }

    /// Whether the terms can match nothing.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }

    /// The words sought, for clients to highlight.
    pub fn highlights(&self) -> Vec<String> {
        let mut words: Vec<String> = self
            .any_of
            .iter()
            .flat_map(|clause| &clause.all)
            .flat_map(|phrase| phrase.words.iter().cloned())
            .collect();
        words.sort();
        words.dedup();
        words
    }
}

/// The indexed text of an event: which field of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchKey {
    /// `content.body` of `m.room.message`.
    Body,
    /// `content.name` of `m.room.name`.
    Name,
    /// `content.topic` of `m.room.topic`.
    Topic,
}

impl SearchKey {
    /// Every key, the default of a search.
    pub const ALL: [Self; 3] = [Self::Body, Self::Name, Self::Topic];

    /// The key's name in the spec (`content.body`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Body => "content.body",
            Self::Name => "content.name",
            Self::Topic => "content.topic",
        }
    }
}

/// The order of results, with where the previous page stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first; skipping the first `offset` results.
    Rank {
        /// Results already served.
        offset: u64,
    },
    /// Newest first (origin timestamp, then stream position); older than `before` when given.
    Recent {
        /// The `(origin_server_ts, stream_pos)` of the last result served.
        before: Option<(u64, u64)>,
    },
}

/// A search of the events of some rooms.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// What to look for.
    pub terms: SearchTerms,
    /// The rooms to look in.
    pub rooms: Vec<OwnedRoomId>,
    /// The fields to look in.
    pub keys: Vec<SearchKey>,
    /// The order, and where to continue.
    pub order: SearchOrder,
    /// The most results to return.
    pub limit: usize,
}

/// An event found by a search.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// The event.
    pub row: EventRow,
    /// How well it matches (higher is better).
    pub rank: f64,
    /// Its origin timestamp, for continuing a search by recency.
    pub origin_server_ts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase(words: &[&str], prefix: bool) -> SearchPhrase {
        SearchPhrase { words: words.iter().map(|w| (*w).to_owned()).collect(), prefix }
    }

    #[test]
    fn words_phrases_exclusions_and_alternatives() {
        let terms = SearchTerms::parse(r#"  Café "Big Crème" -noise OR don't  "#);
        assert_eq!(
            terms.any_of,
            vec![
                SearchClause {
                    all: vec![phrase(&["café"], true), phrase(&["big", "crème"], false)],
                    none: vec![phrase(&["noise"], false)],
                },
                SearchClause { all: vec![phrase(&["don", "t"], true)], none: vec![] },
            ]
        );
        assert_eq!(terms.highlights(), ["big", "café", "crème", "don", "t"]);
    }

    #[test]
    fn punctuation_and_exclusions_alone_ask_for_nothing() {
        assert!(SearchTerms::parse("").is_empty());
        assert!(SearchTerms::parse(r#"!!! "" -alone or "#).is_empty());
        assert!(SearchTerms::parse(r#""unterminated"#).any_of[0].all[0].words == ["unterminated"]);
    }
}
