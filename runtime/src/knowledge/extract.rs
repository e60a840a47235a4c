//! Uploaded documents to text blocks: format sniffing from the content, and one extractor per format.
//!
//! A knowledge-base upload (or a URL import, whose bytes arrive here after the fetch) is a
//! Markdown, plain-text, HTML or PDF document. The format is decided from the bytes
//! themselves: a file name or a `Content-Type` header is only a hint, because tenants rename
//! files and servers mislabel them. Extraction keeps the structure that chunking needs —
//! headings, paragraphs, list items, code and tables with their header row — and drops
//! everything else (markup, navigation, scripts, page furniture).
//!
//! Error messages are shown to tenant admins: they are short, say what to do where they
//! can, and never quote the document.

use std::borrow::Cow;

mod html;
mod markdown;
mod pdf;

/// A document format the knowledge base accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Markdown,
    Text,
    Html,
    Pdf,
}

impl Format {
    /// The stable lowercase name, for storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a document could not be turned into text. The messages are for tenant admins.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// No bytes, only whitespace, or markup without any text.
    #[error("the document has no text")]
    Empty,
    /// More bytes than [`Limits::max_bytes`].
    #[error("the document is larger than the limit of {}", human_size(*limit))]
    TooLarge { limit: usize },
    /// A binary file (an image, an archive, an office document…) or text in no format we read.
    #[error("not a Markdown, text, HTML or PDF document")]
    Unsupported,
    /// Text in another encoding than UTF-8 (or UTF-16 with a byte-order mark).
    #[error("the text is not UTF-8 encoded; save it as UTF-8 and upload it again")]
    NotUtf8,
    /// The PDF needs a password to open.
    #[error("the PDF is protected by a password")]
    PdfEncrypted,
    /// The PDF opens but carries no extractable text, as scanned pages do.
    #[error("the PDF has no text layer (is it scanned?)")]
    PdfNoText,
    /// The PDF is damaged or uses something the reader cannot handle. The text is always
    /// ours (one of a few fixed phrases), never the parser's, so it cannot leak content.
    #[error("the PDF could not be read: {0}")]
    Pdf(String),
    /// More pages than [`Limits::max_pages`].
    #[error("the PDF has more than {limit} pages")]
    TooManyPages { limit: u32 },
}

pub type Result<T> = std::result::Result<T, ExtractError>;

/// "20 MiB" for whole mebibytes, otherwise a byte count: for the admin-facing message.
fn human_size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Bounds on one document, so one upload cannot take the server's memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted upload, in bytes.
    pub max_bytes: usize,
    /// The most pages a PDF may have.
    pub max_pages: u32,
}

impl Default for Limits {
    /// 20 MiB and 2000 pages: a long manual fits, a data dump does not.
    fn default() -> Self {
        Limits {
            max_bytes: 20 * 1024 * 1024,
            max_pages: 2000,
        }
    }
}

/// One structural piece of a document, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A heading; `level` is 1 (top) to 6.
    Heading { level: u8, text: String },
    /// A paragraph of running text. Line breaks inside it are kept as `\n`.
    Paragraph(String),
    /// A table: the header row and the body rows, each a list of cell texts.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// One list item's text, without its bullet or number.
    ListItem(String),
    /// Preformatted text or a code block, whitespace kept.
    Code(String),
    /// The start of a PDF page (numbered from 1). Pages are section breaks: PDFs carry no
    /// reliable headings, so the page is the unit a chunk never crosses.
    Page(u32),
}

/// A document's text, ready for chunking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    /// The first level-1 heading, the HTML `<title>`, or the PDF's Title; `None` if none.
    pub title: Option<String>,
    /// The blocks in reading order.
    pub blocks: Vec<Block>,
    /// The page count, for PDFs only.
    pub pages: Option<u32>,
}

/// How much of the start of a document sniffing looks at: enough for a reliable guess,
/// cheap for a 20 MiB upload.
const SNIFF_WINDOW: usize = 64 * 1024;

/// Decides a document's format from its bytes.
///
/// `content_type` (an upload's declared type or a fetched page's `Content-Type`) only
/// breaks the tie between Markdown and plain text when the content's Markdown signals are
/// weak; it never overrides what the bytes say.
pub fn sniff(bytes: &[u8], content_type: Option<&str>) -> Result<Format> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    if is_pdf(bytes) {
        return Ok(Format::Pdf);
    }
    if has_binary_magic(bytes) {
        return Err(ExtractError::Unsupported);
    }
    let window = &bytes[..bytes.len().min(SNIFF_WINDOW)];
    let text = match decode_window(window) {
        Ok(text) => text,
        Err(WindowError::Binary) => return Err(ExtractError::Unsupported),
        Err(WindowError::NotUtf8) => return Err(ExtractError::NotUtf8),
    };
    if looks_binary(&text) {
        return Err(ExtractError::Unsupported);
    }
    let text = text.trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    classify_text(text, content_type)
}

/// Turns a document into blocks. `format` is normally [`sniff`]'s answer.
pub fn extract(bytes: &[u8], format: Format, limits: &Limits) -> Result<Extracted> {
    if bytes.len() > limits.max_bytes {
        return Err(ExtractError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    let extracted = match format {
        Format::Pdf => pdf::extract(bytes, limits)?,
        Format::Text => plain_text(&clean(&decode_text(bytes)?)),
        Format::Markdown => markdown::extract(&clean(&decode_text(bytes)?)),
        Format::Html => html::extract(&clean(&decode_text(bytes)?)),
    };
    if extracted
        .blocks
        .iter()
        .all(|block| matches!(block, Block::Page(_)))
    {
        return Err(ExtractError::Empty);
    }
    Ok(extracted)
}

/// `%PDF-` at the start, or within the first KiB after binary junk (a header some mail
/// gateways and old Mac tools put in front; PDF readers accept it there too).
fn is_pdf(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let Some(at) = head.windows(5).position(|w| w == b"%PDF-") else {
        return false;
    };
    let before = &head[..at];
    let before = before.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(before);
    before.iter().all(u8::is_ascii_whitespace)
        || before
            .iter()
            .any(|b| *b == 0 || (*b < 0x20 && !b.is_ascii_whitespace()))
}

/// File signatures of common binary formats people upload by mistake: office documents
/// and other archives, images, audio and video, executables, databases.
fn has_binary_magic(bytes: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"PK\x03\x04",                       // zip: docx, xlsx, pptx, odt, epub, jar
        b"PK\x05\x06",                       // empty zip
        b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", // OLE2: doc, xls, ppt, msg
        b"\x89PNG\r\n\x1A\n",                // png
        b"\xFF\xD8\xFF",                     // jpeg
        b"GIF87a",                           // gif
        b"GIF89a",                           // gif
        b"II*\x00",                          // tiff
        b"MM\x00*",                          // tiff
        b"8BPS",                             // photoshop
        b"\x00\x00\x01\x00",                 // ico
        b"\x1F\x8B",                         // gzip
        b"BZh",                              // bzip2 (checked below: needs a digit)
        b"\xFD7zXZ\x00",                     // xz
        b"\x28\xB5\x2F\xFD",                 // zstd
        b"7z\xBC\xAF\x27\x1C",               // 7z
        b"Rar!\x1A\x07",                     // rar
        b"\x7FELF",                          // elf
        b"MZ",                               // windows executable (checked below)
        b"\xCA\xFE\xBA\xBE",                 // mach-o fat, java class
        b"\xCF\xFA\xED\xFE",                 // mach-o 64
        b"\x00asm",                          // wasm
        b"SQLite format 3\x00",              // sqlite
        b"OggS",                             // ogg
        b"fLaC",                             // flac
        b"ID3",                              // mp3 (checked below)
        b"wOFF",                             // web font
        b"wOF2",                             // web font
        b"{\\rtf",                           // rtf: text, but not a format we read
        b"%!PS",                             // postscript
    ];
    let riff = bytes.len() >= 12 && &bytes[..4] == b"RIFF"; // wav, avi, webp
    let iso_media = bytes.len() >= 12 && &bytes[4..8] == b"ftyp"; // mp4, mov, heic, avif
    riff || iso_media
        || MAGICS.iter().any(|magic| {
            if !bytes.starts_with(magic) {
                return false;
            }
            // Short signatures that also start ordinary words need what follows them.
            if *magic == b"BZh" {
                bytes.get(3).is_some_and(u8::is_ascii_digit)
            } else if *magic == b"MZ" || *magic == b"ID3" {
                bytes[..bytes.len().min(512)].contains(&0)
            } else {
                true
            }
        })
}

enum WindowError {
    Binary,
    NotUtf8,
}

/// The sniffing window as text. A window cut in the middle of a UTF-8 sequence is fine;
/// invalid UTF-8 is either binary (many control bytes) or text in a legacy encoding.
fn decode_window(window: &[u8]) -> std::result::Result<Cow<'_, str>, WindowError> {
    if let Some(utf16) = decode_utf16_bom(window, true) {
        return utf16.map(Cow::Owned).ok_or(WindowError::NotUtf8);
    }
    if window.contains(&0) {
        return Err(WindowError::Binary);
    }
    match std::str::from_utf8(window) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        // An incomplete sequence at the very end is the window's cut, not an error.
        Err(e) if e.error_len().is_none() => Ok(Cow::Borrowed(
            std::str::from_utf8(&window[..e.valid_up_to()]).map_err(|_| WindowError::NotUtf8)?,
        )),
        Err(_) => {
            let controls = window
                .iter()
                .filter(|b| **b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
                .count();
            if controls * 100 > window.len() {
                Err(WindowError::Binary)
            } else {
                Err(WindowError::NotUtf8)
            }
        }
    }
}

/// UTF-16 text with a byte-order mark (what some Windows editors save as "Unicode").
/// `None` without a BOM; `Some(None)` when the code units are broken. With `lenient`, a
/// trailing odd byte or a surrogate cut by the sniffing window is dropped.
fn decode_utf16_bom(bytes: &[u8], lenient: bool) -> Option<Option<String>> {
    let little_endian = if bytes.starts_with(b"\xFF\xFE") {
        true
    } else if bytes.starts_with(b"\xFE\xFF") {
        false
    } else {
        return None;
    };
    let body = &bytes[2..];
    if !body.len().is_multiple_of(2) && !lenient {
        return Some(None);
    }
    let mut units: Vec<u16> = body
        .chunks_exact(2)
        .map(|pair| {
            let pair = [pair[0], pair[1]];
            if little_endian {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        })
        .collect();
    if lenient && units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
        units.pop();
    }
    Some(String::from_utf16(&units).ok())
}

/// A text with more than 1 % control characters (other than tab, newline, carriage return,
/// form feed and escape) is some binary format that happens to be valid UTF-8.
fn looks_binary(text: &str) -> bool {
    let mut chars = 0usize;
    let mut controls = 0usize;
    for c in text.chars() {
        chars += 1;
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{0C}' | '\u{1B}') {
            controls += 1;
        }
    }
    controls * 100 > chars
}

/// A whole text document's characters: UTF-8 (a BOM is dropped) or UTF-16 with a BOM.
fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>> {
    if let Some(utf16) = decode_utf16_bom(bytes, false) {
        return utf16.map(Cow::Owned).ok_or(ExtractError::NotUtf8);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|_| ExtractError::NotUtf8)
}

/// Unix newlines, and no control characters other than tab and newline: what every
/// extractor expects, and what is safe to store and show.
fn clean(text: &str) -> String {
    let text = text.trim_start_matches('\u{feff}');
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\t' | '\n' => out.push(c),
            '\u{0C}' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Collapses every run of whitespace to one space and trims the ends.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Plain text: paragraphs are separated by blank lines; line breaks inside one are kept.
fn plain_text(text: &str) -> Extracted {
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end();
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                blocks.push(Block::Paragraph(paragraph.join("\n")));
                paragraph.clear();
            }
        } else {
            paragraph.push(line);
        }
    }
    Extracted {
        title: None,
        blocks,
        pages: None,
    }
}

/// What the text's first non-blank lines look like, for [`classify_text`].
#[derive(Debug, Default)]
struct Signals {
    /// Non-blank lines.
    lines: usize,
    /// Markdown constructs that plain text rarely has: ATX headings, table delimiter rows,
    /// code fences, `[links](…)`.
    strong: usize,
    /// Constructs plain text also uses: bullets, numbered items, quotes, `**emphasis**`,
    /// `` `code` ``, underlined headings.
    weak: usize,
    /// Opening or closing tags of common HTML elements.
    tags: usize,
}

const HTML_TAGS: &[&str] = &[
    "a",
    "article",
    "b",
    "blockquote",
    "body",
    "br",
    "code",
    "div",
    "em",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "i",
    "img",
    "li",
    "link",
    "main",
    "meta",
    "nav",
    "ol",
    "p",
    "pre",
    "script",
    "section",
    "span",
    "strong",
    "style",
    "table",
    "td",
    "th",
    "title",
    "tr",
    "ul",
];

/// Elements that open an HTML fragment (a page without `<html>`).
const HTML_OPENERS: &[&str] = &[
    "article", "body", "div", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "main", "meta",
    "p", "section", "table", "title", "ul", "ol",
];

/// Counts the tags of [`HTML_TAGS`] in a line.
fn count_tags(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|b| *b == b'<') {
        let start = i + offset + 1;
        let start = if bytes.get(start) == Some(&b'/') {
            start + 1
        } else {
            start
        };
        if tag_name_at(bytes, start).is_some_and(|name| HTML_TAGS.contains(&name.as_str())) {
            count += 1;
        }
        i = start;
    }
    count
}

/// The lowercase element name at `start` if it is followed by `>`, `/` or whitespace.
fn tag_name_at(bytes: &[u8], start: usize) -> Option<String> {
    let rest = bytes.get(start..)?;
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if len == 0 || len > 10 {
        return None;
    }
    match rest.get(len) {
        Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r') => {
            Some(String::from_utf8_lossy(&rest[..len]).to_ascii_lowercase())
        }
        _ => None,
    }
}

fn signals(text: &str) -> Signals {
    let mut signals = Signals::default();
    let mut previous_blank = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            previous_blank = true;
            continue;
        }
        signals.lines += 1;
        signals.tags += count_tags(line);
        let indent = line.len() - line.trim_start().len();
        if (indent <= 3 && is_atx_heading(trimmed))
            || is_table_delimiter(trimmed)
            || trimmed.starts_with("```")
            || trimmed.starts_with("~~~")
            || has_markdown_link(trimmed)
        {
            signals.strong += 1;
        } else if is_list_item(trimmed)
            || trimmed.starts_with("> ")
            || has_pair(trimmed, "**")
            || has_pair(trimmed, "`")
            || (!previous_blank
                && trimmed.len() >= 3
                && (trimmed.bytes().all(|b| b == b'=') || trimmed.bytes().all(|b| b == b'-')))
        {
            signals.weak += 1;
        }
        previous_blank = false;
    }
    signals
}

fn is_atx_heading(line: &str) -> bool {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    (1..=6).contains(&hashes)
        && line[hashes..].starts_with([' ', '\t'])
        && !line[hashes..].trim().is_empty()
}

/// A GFM table delimiter row such as `|---|:--:|` or `--- | ---`.
fn is_table_delimiter(line: &str) -> bool {
    line.contains('|')
        && line.contains("---")
        && line
            .bytes()
            .all(|b| matches!(b, b'|' | b'-' | b':' | b' ' | b'\t'))
}

fn is_list_item(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix(['-', '*', '+']) {
        return rest.starts_with(' ') && !rest.trim().is_empty();
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    (1..=9).contains(&digits)
        && line[digits..].starts_with(['.', ')'])
        && line[digits + 1..].starts_with(' ')
}

/// `[text](target)`.
fn has_markdown_link(line: &str) -> bool {
    line.match_indices("](").any(|(at, _)| {
        line[..at].contains('[') && line[at + 2..].contains(')') && !line[..at].ends_with('[')
    })
}

/// At least two occurrences of `marker` with text between them.
fn has_pair(line: &str, marker: &str) -> bool {
    let mut parts = line.split(marker);
    parts.next();
    parts.next().is_some_and(|inner| !inner.trim().is_empty()) && parts.next().is_some()
}

/// The declared media type without parameters, lowercased.
fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|value| {
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

fn classify_text(text: &str, content_type: Option<&str>) -> Result<Format> {
    let start = skip_prologue(text);
    let lower: String = start
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return Ok(Format::Html);
    }
    if lower.starts_with("<?xml") || lower.starts_with("<svg") || lower.starts_with("<!doctype") {
        // XML of another kind (SVG, feeds, office internals): text, but not a document we read.
        return Err(ExtractError::Unsupported);
    }
    let signals = signals(text);
    let opens_like_html = start.starts_with('<')
        && tag_name_at(start.as_bytes(), 1)
            .is_some_and(|name| HTML_OPENERS.contains(&name.as_str()));
    let dense_tags = signals.tags >= 4 && signals.tags * 2 >= signals.lines;
    // A README that opens with `<p align="center">` is still Markdown: its Markdown signals
    // outnumber the tags.
    if (opens_like_html || dense_tags) && signals.strong * 4 < signals.tags.max(1) * 3 {
        return Ok(Format::Html);
    }
    let score = signals.strong * 2 + signals.weak;
    let hint = media_type(content_type);
    let format = match score {
        0 => Format::Text,
        1..=2 => match hint.as_deref() {
            Some("text/markdown" | "text/x-markdown") => Format::Markdown,
            Some("text/plain") => Format::Text,
            _ if signals.strong > 0 => Format::Markdown,
            _ => Format::Text,
        },
        _ => Format::Markdown,
    };
    Ok(format)
}

/// The text after leading whitespace and HTML comments.
fn skip_prologue(text: &str) -> &str {
    let mut rest = text.trim_start();
    while let Some(comment) = rest.strip_prefix("<!--") {
        match comment.find("-->") {
            Some(end) => rest = comment[end + 3..].trim_start(),
            None => return "",
        }
    }
    rest
}

#[cfg(test)]
pub(crate) mod tests;
