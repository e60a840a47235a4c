//! A minimal PDF writer for tests and benchmarks: real, valid files with Helvetica text.
//!
//! Extraction tests need PDFs whose text is known, and a benchmark needs large ones; a
//! checked-in binary fixture says nothing about its content. This writes the smallest
//! structure a reader accepts — catalog, page tree, one standard font, uncompressed content
//! streams, an optional Info Title, a correct cross-reference table — with no dependency.

use std::fmt::Write as _;

/// One page's content stream.
#[derive(Debug, Clone)]
enum Page {
    /// Lines of text, top to bottom; an empty line leaves a paragraph gap.
    Lines(Vec<String>),
    /// A content stream written by the caller (font `/F1` is available).
    Raw(String),
}

/// Builds a PDF page by page.
#[derive(Debug, Clone, Default)]
pub struct PdfBuilder {
    title: Option<String>,
    pages: Vec<Page>,
}

/// Font size and line distance of [`PdfBuilder::page`] text, in points.
const FONT_SIZE: u32 = 11;
const LEADING: u32 = 14;

impl PdfBuilder {
    pub fn new() -> PdfBuilder {
        PdfBuilder::default()
    }

    /// Sets the Info dictionary's Title.
    pub fn title(mut self, title: &str) -> PdfBuilder {
        self.title = Some(title.to_owned());
        self
    }

    /// Adds a page with these lines of 11-point Helvetica, 14 points apart, from the top
    /// left margin down; an empty string leaves a blank line (a paragraph break). Lines
    /// past the bottom of the page are written anyway (off the visible page).
    pub fn page(mut self, lines: &[&str]) -> PdfBuilder {
        self.pages
            .push(Page::Lines(lines.iter().map(|l| (*l).to_owned()).collect()));
        self
    }

    /// Adds a page whose content stream is `content`, verbatim.
    pub fn raw_page(mut self, content: &str) -> PdfBuilder {
        self.pages.push(Page::Raw(content.to_owned()));
        self
    }

    /// The PDF file.
    pub fn build(&self) -> Vec<u8> {
        let mut objects: Vec<Vec<u8>> = Vec::new();
        let page_count = self.pages.len();
        // Object numbers: 1 catalog, 2 page tree, 3 font, then a page and its content for
        // each page, then the Info dictionary.
        let page_id = |i: usize| 4 + 2 * i;
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        let kids: Vec<String> = (0..page_count)
            .map(|i| format!("{} 0 R", page_id(i)))
            .collect();
        objects.push(
            format!(
                "<< /Type /Pages /Kids [{}] /Count {page_count} >>",
                kids.join(" ")
            )
            .into_bytes(),
        );
        objects.push(
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_vec(),
        );
        for (i, page) in self.pages.iter().enumerate() {
            objects.push(
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                     /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                    page_id(i) + 1
                )
                .into_bytes(),
            );
            let content = match page {
                Page::Lines(lines) => lines_content(lines),
                Page::Raw(content) => content.as_bytes().to_vec(),
            };
            let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
            stream.extend_from_slice(&content);
            stream.extend_from_slice(b"\nendstream");
            objects.push(stream);
        }
        let info_id = self.title.as_ref().map(|title| {
            let mut info = b"<< /Title ".to_vec();
            info.extend(text_string(title));
            info.extend_from_slice(b" /Producer (testpdf) >>");
            objects.push(info);
            objects.len()
        });

        let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::with_capacity(objects.len());
        for (i, object) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
            out.extend_from_slice(object);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref_at = out.len();
        let mut xref = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
        for offset in offsets {
            let _ = writeln!(xref, "{offset:010} 00000 n ");
        }
        // A file identifier: readers need one to decrypt, and tests encrypt these files.
        let _ = write!(
            xref,
            "trailer\n<< /Size {} /Root 1 0 R /ID [<{id:032X}> <{id:032X}>]",
            objects.len() + 1,
            id = u128::from(fnv1a(&out))
        );
        if let Some(id) = info_id {
            let _ = write!(xref, " /Info {id} 0 R");
        }
        let _ = write!(xref, " >>\nstartxref\n{xref_at}\n%%EOF\n");
        out.extend(xref.into_bytes());
        out
    }
}

/// A text object writing `lines` down from the top margin.
fn lines_content(lines: &[String]) -> Vec<u8> {
    let mut content = format!("BT\n/F1 {FONT_SIZE} Tf\n{LEADING} TL\n72 740 Td\n").into_bytes();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            content.extend_from_slice(b"T*\n");
        }
        if !line.is_empty() {
            content.extend(literal(line));
            content.extend_from_slice(b" Tj\n");
        }
    }
    content.extend_from_slice(b"ET");
    content
}

/// A PDF literal string in WinAnsi (Latin-1 for the characters tests use); characters
/// outside it become `?`.
fn literal(text: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            '\u{a0}'..='\u{ff}' => out.push(c as u32 as u8),
            _ => out.push(b'?'),
        }
    }
    out.push(b')');
    out
}

/// A PDF text string: a literal for ASCII, UTF-16BE with a byte-order mark otherwise.
fn text_string(text: &str) -> Vec<u8> {
    if text.is_ascii() {
        return literal(text);
    }
    let mut hex = String::from("<FEFF");
    for unit in text.encode_utf16() {
        let _ = write!(hex, "{unit:04X}");
    }
    hex.push('>');
    hex.into_bytes()
}

/// FNV-1a of the file so far: a deterministic file identifier.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic multi-page document of ordinary prose (about 40 lines a page, in
/// paragraphs), for benchmarks: the same `pages` always gives the same bytes.
pub fn sample_document(pages: u32) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "refund", "order", "customer", "shipping", "within", "days", "the", "a", "of", "and",
        "account", "invoice", "payment", "card", "support", "team", "will", "your", "is",
        "delivery", "address", "change", "return", "policy", "product", "warranty", "to",
        "contact", "email", "phone", "hours", "we", "can", "not", "after", "before", "request",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut word = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        WORDS[(state % WORDS.len() as u64) as usize]
    };
    const TOPICS: &[&str] = &[
        "Refunds", "Shipping", "Accounts", "Invoices", "Warranty", "Support", "Returns",
    ];
    let mut builder = PdfBuilder::new().title("Sample handbook");
    for page in 1..=pages {
        let topic = TOPICS[page as usize % TOPICS.len()];
        let mut lines = vec![format!("Section {page}: {topic}"), String::new()];
        for line in 0..40 {
            if line % 8 == 7 {
                lines.push(String::new());
                continue;
            }
            let mut text: Vec<&str> = (0..12).map(|_| word()).collect();
            if line % 8 == 6 {
                text.push("end.");
            }
            lines.push(text.join(" "));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        builder = builder.page(&refs);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let pdf = PdfBuilder::new().title("Ünïcode").page(&["x"]).build();
        let xref = pdf
            .windows(6)
            .rposition(|w| w == b"\nxref\n")
            .unwrap_or_default()
            + 1;
        let table = String::from_utf8_lossy(&pdf[xref..]);
        let entries: Vec<usize> = table
            .lines()
            .skip(3)
            .take_while(|line| line.ends_with(" n "))
            .map(|line| line[..10].parse().unwrap_or_default())
            .collect();
        assert_eq!(entries.len(), 6);
        for (i, offset) in entries.iter().enumerate() {
            assert!(pdf[*offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()));
        }
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("<FEFF00DC006E00EF0063006F00640065>"));
    }

    #[test]
    fn the_sample_document_is_deterministic_and_has_the_pages_asked_for() {
        let a = sample_document(3);
        assert_eq!(a, sample_document(3));
        assert_eq!(
            String::from_utf8_lossy(&a).matches("/Type /Page ").count(),
            3
        );
    }
}
