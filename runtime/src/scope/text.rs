//! The scope check's text handling, free of the model: how a business function is cut into
//! phrases, how a message is cut into its questions, which messages are small talk or ask for
//! a person, and a rough guess at whether a message is English.

/// The longest business function, example or message the check reads, in bytes (cut on a
/// character boundary). The model reads 128 tokens anyway; this bounds the tokenizer's work
/// and the cache's memory for a pathological input.
pub const MAX_TEXT_BYTES: usize = 2_000;
/// The most phrases taken from one business function.
pub const MAX_PHRASES: usize = 24;
/// The most examples taken from one agent (the API accepts 50).
pub const MAX_EXAMPLES: usize = 50;
/// The most questions a message is cut into (beyond the whole message itself).
pub const MAX_PARTS: usize = 4;

/// `text` cut to at most `max` bytes on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The phrases a business function is compared by: the whole text, the part before a colon
/// (usually "who we are"), and each item of the list that follows, both alone and prefixed by
/// that head so that "returns" reads as "a shoe store's returns". A single embedding of the
/// whole text averages the items away; a customer asks about one item at a time.
pub fn phrases(business_function: &str) -> Vec<String> {
    let text = clip(business_function.trim(), MAX_TEXT_BYTES);
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        let s = s.trim().to_string();
        if s.chars().filter(|c| c.is_alphanumeric()).count() >= 3
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&s))
            && out.len() < MAX_PHRASES
        {
            out.push(s);
        }
    };
    push(text.to_string());
    let (head, list) = match text.split_once(':') {
        Some((head, list)) => (head.trim(), list),
        None => ("", text),
    };
    if !head.is_empty() {
        push(head.to_string());
    }
    let items = split_items(list);
    for item in &items {
        push(item.clone());
    }
    if !head.is_empty() {
        for item in &items {
            push(format!("{head}: {item}"));
        }
    }
    out
}

/// The items of a list written in prose: split on commas, semicolons, sentence ends, slashes,
/// line breaks and the word "and".
fn split_items(list: &str) -> Vec<String> {
    let mut items = Vec::new();
    for piece in list.split([',', ';', '\n', '/', '|', '•']) {
        for sentence in split_sentences(piece) {
            for item in sentence.split(" and ").flat_map(|s| s.split(" & ")) {
                let item = item
                    .trim()
                    .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
                if !item.is_empty() {
                    items.push(item.to_string());
                }
            }
        }
    }
    items
}

/// Splits on `.`, `!`, `?` followed by whitespace (so "3.5" and "dr.patel" stay whole).
fn split_sentences(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '¿' | '¡')
            && chars.peek().is_none_or(|(_, next)| next.is_whitespace())
        {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The separate questions of a message with more than one ("where is my order? also, write
/// me a poem"), so that one in-scope question keeps the whole message in scope. Empty for a
/// message with a single question: the whole message is then the only thing embedded.
pub fn parts(message: &str) -> Vec<String> {
    let text = clip(message.trim(), MAX_TEXT_BYTES);
    let mut parts: Vec<String> = Vec::new();
    for line in text.split(['\n', ';']) {
        for sentence in split_sentences(line) {
            let lower = sentence.to_lowercase();
            let mut rest = sentence;
            // Customers chain questions with "also" and "btw" as often as with punctuation.
            for joiner in [" also ", " btw ", " by the way ", " and also "] {
                if let Some(at) = lower.find(joiner)
                    && at <= rest.len()
                    && rest.is_char_boundary(at)
                {
                    let (a, b) = rest.split_at(at);
                    if word_count(a) >= 2 {
                        parts.push(a.trim().to_string());
                        rest = b;
                    }
                    break;
                }
            }
            let rest = rest.trim();
            if !rest.is_empty() {
                parts.push(rest.to_string());
            }
        }
    }
    let parts: Vec<String> = parts
        .iter()
        .map(|p| strip_joiner(p).to_string())
        .filter(|p| p.chars().any(char::is_alphanumeric))
        .collect();
    if parts.len() < 2 {
        return Vec::new();
    }
    let mut parts = parts;
    parts.truncate(MAX_PARTS);
    parts
}

/// A question without the word that chained it to the one before ("also, …", "btw …").
fn strip_joiner(part: &str) -> &str {
    let part = part.trim();
    let lower = part.to_lowercase();
    for joiner in ["and also", "also", "btw", "by the way", "and", "plus"] {
        if let Some(rest) = lower.strip_prefix(joiner)
            && rest.starts_with(|c: char| c == ',' || c.is_whitespace())
            && part.is_char_boundary(joiner.len())
        {
            return part[joiner.len()..].trim_start_matches(',').trim();
        }
    }
    part
}

fn word_count(text: &str) -> usize {
    words(text).count()
}

/// Lower-case words, punctuation stripped (apostrophes kept: "what's").
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Greetings, thanks, goodbyes and acknowledgements in the languages the check knows.
const SMALL_TALK: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "heya",
    "hiya",
    "yo",
    "morning",
    "good",
    "afternoon",
    "evening",
    "night",
    "day",
    "there",
    "thanks",
    "thank",
    "you",
    "thx",
    "ty",
    "tks",
    "cheers",
    "ok",
    "okay",
    "k",
    "kk",
    "great",
    "perfect",
    "cool",
    "nice",
    "awesome",
    "yes",
    "yep",
    "yeah",
    "no",
    "nope",
    "sure",
    "please",
    "pls",
    "bye",
    "goodbye",
    "see",
    "later",
    "soon",
    "so",
    "much",
    "very",
    "a",
    "lot",
    "all",
    "again",
    "got",
    "it",
    "fine",
    "alright",
    "welcome",
    "hola",
    "buenos",
    "buenas",
    "días",
    "dias",
    "tardes",
    "noches",
    "gracias",
    "muchas",
    "adiós",
    "adios",
    "vale",
    "sí",
    "si",
    "hasta",
    "luego",
    "hallo",
    "moin",
    "servus",
    "guten",
    "tag",
    "morgen",
    "abend",
    "danke",
    "vielen",
    "dank",
    "schön",
    "tschüss",
    "tschüs",
    "ja",
    "nein",
    "bitte",
    "olá",
    "ola",
    "oi",
    "bom",
    "boa",
    "dia",
    "tarde",
    "noite",
    "obrigado",
    "obrigada",
    "valeu",
    "tchau",
    "sim",
    "não",
    "nao",
    "muito",
    "bonjour",
    "bonsoir",
    "salut",
    "coucou",
    "merci",
    "beaucoup",
    "oui",
    "non",
    "au",
    "revoir",
    "d'accord",
    "ciao",
];

/// A greeting, a thank-you or a goodbye and nothing else. Never declined: it is how a
/// conversation starts and ends, whatever the business.
pub fn is_small_talk(message: &str) -> bool {
    let mut count = 0;
    for word in words(message) {
        count += 1;
        if count > 8 || !SMALL_TALK.contains(&word.as_str()) {
            return false;
        }
    }
    // Only punctuation or emoji ("👍", "?"): nothing to judge, nothing to decline.
    true
}

/// Ways customers ask for a person. A request for a human is never declined.
const ASKS_FOR_PERSON: &[&str] = &[
    "real person",
    "a human",
    "an human",
    "human agent",
    "human being",
    "talk to someone",
    "speak to someone",
    "speak with someone",
    "talk to a person",
    "speak to a person",
    "speak with a person",
    "an agent",
    "a representative",
    "customer service",
    "your manager",
    "the manager",
    "call me back",
    "hablar con",
    "persona real",
    "un humano",
    "mit einem menschen",
    "mitarbeiter",
    "echten menschen",
    "falar com",
    "atendente",
    "pessoa real",
    "parler à",
    "parler a",
    "un humain",
    "un conseiller",
    "une personne",
];

/// Whether the message asks to talk to a person (the hand-off the platform always offers).
pub fn asks_for_person(message: &str) -> bool {
    let lower = message.to_lowercase();
    ASKS_FOR_PERSON.iter().any(|p| lower.contains(p))
}

/// Frequent words that mark a language. The check is English-first: it holds messages in
/// other languages to a stricter margin, because the model places them less reliably.
const ENGLISH: &[&str] = &[
    "the", "is", "are", "i", "my", "you", "your", "to", "of", "and", "in", "for", "on", "with",
    "what", "how", "can", "do", "does", "it", "me", "this", "that", "have", "where", "when", "why",
    "who", "please", "an", "be", "was", "not", "will", "there", "i'm", "what's",
];
const OTHER: &[&[&str]] = &[
    // Spanish.
    &[
        "el", "la", "los", "las", "que", "y", "en", "un", "una", "por", "para", "con", "mi", "es",
        "está", "hola", "quiero", "puedo", "cómo", "dónde", "cuál", "qué", "me", "del", "tengo",
        "mis", "su", "pero", "muy", "hay", "tienen", "sobre",
    ],
    // German.
    &[
        "der", "die", "das", "und", "ich", "ist", "nicht", "mein", "meine", "ein", "eine", "wie",
        "was", "wann", "kann", "bitte", "mit", "für", "zu", "den", "dem", "ihr", "sie", "habe",
        "wir", "auf", "mir", "mich", "über", "habt", "seit", "noch", "wer",
    ],
    // Portuguese.
    &[
        "o", "os", "as", "que", "e", "em", "um", "uma", "para", "com", "meu", "minha", "você",
        "vocês", "não", "é", "está", "quero", "como", "qual", "do", "da", "no", "na", "foi", "tem",
        "sobre", "me", "ajuda", "fazem", "olá",
    ],
    // French.
    &[
        "le", "la", "les", "des", "et", "je", "est", "pas", "mon", "ma", "un", "une", "pour",
        "avec", "vous", "que", "qui", "du", "au", "ce", "ne", "j'ai", "c'est", "mes", "moi", "sur",
        "bonjour", "quelle", "quel", "peux", "votre", "n'ai",
    ],
];

/// A rough guess that the message is not in English: more marker words of another language
/// than of English, or letters English does not use.
pub fn looks_non_english(message: &str) -> bool {
    let mut english = 0usize;
    let mut other = [0usize; 4];
    for word in words(message) {
        if ENGLISH.contains(&word.as_str()) {
            english += 1;
        }
        for (count, list) in other.iter_mut().zip(OTHER) {
            if list.contains(&word.as_str()) {
                *count += 1;
            }
        }
    }
    let accents = message
        .chars()
        .filter(|c| "áéíóúñçãõâêôàèùäöüßœ¿¡ëïû".contains(c.to_lowercase().next().unwrap_or(*c)))
        .count();
    let best_other = other.iter().copied().max().unwrap_or(0) + accents.min(2);
    best_other > english
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_business_function_gives_its_whole_text_its_head_and_each_item() {
        let p = phrases(
            "Customer support for Acme's online shoe store: orders, shipping, returns and sizing",
        );
        assert_eq!(
            p[0],
            "Customer support for Acme's online shoe store: orders, shipping, returns and sizing"
        );
        assert!(p.contains(&"Customer support for Acme's online shoe store".to_string()));
        for item in ["orders", "shipping", "returns", "sizing"] {
            assert!(p.contains(&item.to_string()), "{item} in {p:?}");
            assert!(p.contains(&format!(
                "Customer support for Acme's online shoe store: {item}"
            )));
        }
    }

    #[test]
    fn a_business_function_without_a_list_is_one_phrase_per_sentence() {
        let p = phrases("We sell bikes. We also repair them.");
        assert_eq!(
            p,
            vec![
                "We sell bikes. We also repair them.",
                "We sell bikes",
                "We also repair them"
            ]
        );
        assert!(phrases("   ").is_empty());
    }

    #[test]
    fn phrases_are_bounded() {
        let long = format!(
            "Shop: {}",
            (0..100)
                .map(|i| format!("item{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(phrases(&long).len(), MAX_PHRASES);
    }

    #[test]
    fn a_message_with_two_questions_is_cut_into_both() {
        assert_eq!(
            parts("where is my order? also write me a poem"),
            vec!["where is my order", "write me a poem"]
        );
        assert_eq!(
            parts("card declined again at the hotel. any tips on what to see in rome?"),
            vec![
                "card declined again at the hotel",
                "any tips on what to see in rome"
            ]
        );
        assert_eq!(
            parts("hey do you ship to spain lol btw whats the capital"),
            vec!["hey do you ship to spain lol", "whats the capital"]
        );
    }

    #[test]
    fn a_message_with_one_question_is_not_cut() {
        assert!(parts("what is 3.5 times 2?").is_empty());
        assert!(parts("is dr.patel in on monday").is_empty());
        assert!(parts("hello?!").is_empty());
    }

    #[test]
    fn greetings_and_thanks_are_small_talk_in_several_languages() {
        for m in [
            "hi",
            "Hello!!",
            "thanks a lot",
            "ok thank you",
            "hola, buenos días",
            "Danke schön",
            "obrigado",
            "merci beaucoup",
            "👍",
        ] {
            assert!(is_small_talk(m), "{m}");
        }
        for m in [
            "hi, write me a poem",
            "tell me a joke",
            "thanks, where is my order",
        ] {
            assert!(!is_small_talk(m), "{m}");
        }
    }

    #[test]
    fn requests_for_a_person_are_recognised() {
        for m in [
            "can I talk to a real person please",
            "I want to speak to someone NOW",
            "quiero hablar con alguien",
            "Je veux parler à un conseiller",
        ] {
            assert!(asks_for_person(m), "{m}");
        }
        assert!(!asks_for_person("write me a poem about people"));
    }

    #[test]
    fn the_language_guess_tells_english_from_the_others() {
        for m in [
            "where is my order",
            "do u ship to ireland",
            "can I book a table for 4",
        ] {
            assert!(!looks_non_english(m), "{m}");
        }
        for m in [
            "¿dónde está mi pedido?",
            "Wann kommt meine Bestellung an?",
            "vocês fazem entrega?",
            "Je voudrais réserver une table",
        ] {
            assert!(looks_non_english(m), "{m}");
        }
    }

    #[test]
    fn clipping_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("hello", 10), "hello");
    }
}
