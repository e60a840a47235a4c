//! PDF to blocks: the text layer of each page, in content-stream order, split into paragraphs.
//!
//! A PDF has no headings or paragraphs, only positioned glyph runs. Line and paragraph
//! breaks are recovered from the vertical movement between runs (a gap well above the
//! font size is a new paragraph); hyphenated line ends are joined. Each page starts with a
//! [`Block::Page`] marker: pages are the only reliable sections a PDF has.
//!
//! Parsing untrusted PDFs is bounded: every stream inflates to at most
//! [`MAX_STREAM_BYTES`], all page contents together to at most [`MAX_CONTENT_BYTES`], and a
//! panic inside the parser becomes an error instead of taking the worker down. A PDF that
//! opens with the empty password (restrictions only, as many generated PDFs have) is read;
//! one that needs a real password is refused.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::content::Content;
use lopdf::{Document, Encoding, LoadOptions, Object, ObjectId};

use super::{Block, ExtractError, Extracted, Limits, Result};

/// The most one stream (a page's content, a font map, an object stream) may inflate to.
const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;
/// The most all page contents together may inflate to: bounds the work one upload costs.
const MAX_CONTENT_BYTES: usize = 256 * 1024 * 1024;

const DAMAGED: &str = "it is damaged or not a valid PDF";
const TOO_BIG: &str = "it unpacks to more data than we process";
const CRASHED: &str = "it uses a structure the reader cannot handle";

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes, limits)))
        .unwrap_or_else(|_| Err(ExtractError::Pdf(CRASHED.into())))
}

fn extract_unguarded(bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_STREAM_BYTES),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(load_error)?;
    if doc.trailer.get(b"Encrypt").is_ok() && doc.encryption_state.is_none() {
        // Encrypted, and the empty password did not open it.
        return Err(ExtractError::PdfEncrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(ExtractError::Pdf(DAMAGED.into()));
    }
    if pages.len() > limits.max_pages as usize {
        return Err(ExtractError::TooManyPages {
            limit: limits.max_pages,
        });
    }
    let mut budget = MAX_CONTENT_BYTES;
    let mut texts = Vec::with_capacity(pages.len());
    for &page_id in pages.values() {
        texts.push(paragraphs(&page_text(&doc, page_id, &mut budget)?));
    }
    drop_page_furniture(&mut texts);
    let mut blocks = Vec::new();
    let (mut letters, mut visible) = (0usize, 0usize);
    for (&number, paragraphs) in pages.keys().zip(texts) {
        blocks.push(Block::Page(number));
        for paragraph in paragraphs {
            for c in paragraph.chars().filter(|c| !c.is_whitespace()) {
                visible += 1;
                letters += usize::from(c.is_alphanumeric());
            }
            blocks.push(Block::Paragraph(paragraph));
        }
    }
    // Fonts without a Unicode map yield symbols and replacement characters: that is no
    // more a text layer than a scan is.
    if visible == 0 || letters * 5 < visible {
        return Err(ExtractError::PdfNoText);
    }
    Ok(Extracted {
        title: info_title(&doc),
        blocks,
        pages: Some(pages.len() as u32),
    })
}

fn load_error(error: lopdf::Error) -> ExtractError {
    match error {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => ExtractError::PdfEncrypted,
        lopdf::Error::Decompress(_) => ExtractError::Pdf(TOO_BIG.into()),
        _ => ExtractError::Pdf(DAMAGED.into()),
    }
}

/// The document information dictionary's Title, if it has a non-blank one.
fn info_title(doc: &Document) -> Option<String> {
    let info = match doc.trailer.get(b"Info").ok()? {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(dict) => dict,
        _ => return None,
    };
    let title = lopdf::decode_text_string(info.get_deref(b"Title", doc).ok()?).ok()?;
    let title = super::collapse_whitespace(&super::clean(&title));
    (!title.is_empty()).then_some(title)
}

/// An affine transformation `[a b c d e f]` as PDF writes them (row vectors).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn from_operands(operands: &[Object]) -> Option<Matrix> {
        let mut m = [0.0; 6];
        for (slot, operand) in m.iter_mut().zip(operands) {
            *slot = operand.as_float().ok()?;
        }
        (operands.len() >= 6 && m.iter().all(|v| v.is_finite())).then_some(Matrix(m))
    }

    fn translation(tx: f32, ty: f32) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, tx, ty])
    }

    /// `self × other`: apply `self`, then `other`.
    fn then(self, other: Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a * a2 + b * c2,
            a * b2 + b * d2,
            c * a2 + d * c2,
            c * b2 + d * d2,
            e * a2 + f * c2 + e2,
            e * b2 + f * d2 + f2,
        ])
    }
}

/// Turns one page's text operators into text with `\n` between lines and `\n\n` between
/// paragraphs.
struct PageWriter<'a> {
    encodings: BTreeMap<Vec<u8>, Encoding<'a>>,
    font: Option<Vec<u8>>,
    font_size: f32,
    leading: f32,
    ctm: Matrix,
    ctm_stack: Vec<Matrix>,
    text_matrix: Matrix,
    line_matrix: Matrix,
    /// Where the last glyph run started (device y) and its font size in device units.
    last: Option<(f32, f32)>,
    /// The last gap between two lines of one paragraph, to tell a wider paragraph gap.
    line_gap: Option<f32>,
    /// A positioning operator came since the last run: a new word on the same line.
    moved: bool,
    out: String,
}

impl PageWriter<'_> {
    fn operation(&mut self, operator: &str, operands: &[Object]) {
        let number = |i: usize| operands.get(i).and_then(|o| o.as_float().ok());
        match operator {
            // Bounded: a hostile stream of `q`s cannot grow the stack without limit.
            "q" if self.ctm_stack.len() < 256 => self.ctm_stack.push(self.ctm),
            "q" => {}
            "Q" => self.ctm = self.ctm_stack.pop().unwrap_or(Matrix::IDENTITY),
            "cm" => {
                if let Some(m) = Matrix::from_operands(operands) {
                    self.ctm = m.then(self.ctm);
                }
            }
            "BT" => {
                self.text_matrix = Matrix::IDENTITY;
                self.line_matrix = Matrix::IDENTITY;
            }
            "Tf" => {
                self.font = operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .map(<[u8]>::to_vec);
                self.font_size = number(1).unwrap_or(self.font_size);
            }
            "TL" => self.leading = number(0).unwrap_or(self.leading),
            "Td" | "TD" => {
                let (tx, ty) = (number(0).unwrap_or(0.0), number(1).unwrap_or(0.0));
                if operator == "TD" {
                    self.leading = -ty;
                }
                self.next_line(tx, ty);
            }
            "T*" => self.next_line(0.0, -self.leading),
            "Tm" => {
                if let Some(m) = Matrix::from_operands(operands) {
                    self.line_matrix = m;
                    self.text_matrix = m;
                    self.moved = true;
                }
            }
            "Tj" => self.show(operands.first()),
            "'" => {
                self.next_line(0.0, -self.leading);
                self.show(operands.first());
            }
            "\"" => {
                self.next_line(0.0, -self.leading);
                self.show(operands.get(2));
            }
            "TJ" => {
                if let Some(Object::Array(items)) = operands.first() {
                    for item in items {
                        match item {
                            // A large negative kern is a word space typeset as a gap.
                            Object::Integer(_) | Object::Real(_) => {
                                if item.as_float().is_ok_and(|kern| kern < -180.0) {
                                    self.push_space();
                                }
                            }
                            string => self.show(Some(string)),
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn next_line(&mut self, tx: f32, ty: f32) {
        self.line_matrix = Matrix::translation(tx, ty).then(self.line_matrix);
        self.text_matrix = self.line_matrix;
        self.moved = true;
    }

    fn push_space(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with(char::is_whitespace) {
            self.out.push(' ');
        }
    }

    fn show(&mut self, operand: Option<&Object>) {
        let Some(Object::String(bytes, _)) = operand else {
            return;
        };
        let Some(encoding) = self.font.as_ref().and_then(|f| self.encodings.get(f)) else {
            return;
        };
        let Ok(text) = encoding.bytes_to_string(bytes) else {
            return;
        };
        let text: String = text
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .map(|c| if c == '\u{a0}' { ' ' } else { c })
            .collect();
        if text.trim().is_empty() {
            if !text.is_empty() {
                self.push_space();
            }
            return;
        }
        let device = self.text_matrix.then(self.ctm);
        let [_, _, c, d, _, y] = device.0;
        let size = (self.font_size.abs() * c.hypot(d)).max(0.1);
        if let Some((last_y, last_size)) = self.last {
            let dy = last_y - y;
            let size = size.max(last_size);
            let wide_gap = self
                .line_gap
                .is_some_and(|gap| dy > gap * 1.4 + 0.05 * size);
            if dy > 1.75 * size || dy < -0.6 * size || (dy >= 0.5 * size && wide_gap) {
                self.out.push_str("\n\n");
                self.line_gap = None;
            } else if dy >= 0.5 * size {
                self.out.push('\n');
                self.line_gap = Some(dy);
            } else if self.moved {
                self.push_space();
            }
        }
        self.last = Some((y, size));
        self.moved = false;
        self.out.push_str(&text);
    }
}

/// One page's text, or an empty string when its content cannot be read: one broken page
/// should not lose the rest of the document.
fn page_text(doc: &Document, page_id: ObjectId, budget: &mut usize) -> Result<String> {
    let Ok(content) = doc.get_page_content_with_limit(page_id, MAX_STREAM_BYTES) else {
        return Ok(String::new());
    };
    *budget = budget
        .checked_sub(content.len())
        .ok_or_else(|| ExtractError::Pdf(TOO_BIG.into()))?;
    let Ok(content) = Content::decode(&content) else {
        return Ok(String::new());
    };
    let encodings = doc
        .get_page_fonts(page_id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, font)| {
            font.get_font_encoding_with_limit(doc, MAX_STREAM_BYTES)
                .ok()
                .map(|encoding| (name, encoding))
        })
        .collect();
    let mut writer = PageWriter {
        encodings,
        font: None,
        font_size: 1.0,
        leading: 0.0,
        ctm: Matrix::IDENTITY,
        ctm_stack: Vec::new(),
        text_matrix: Matrix::IDENTITY,
        line_matrix: Matrix::IDENTITY,
        last: None,
        line_gap: None,
        moved: false,
        out: String::new(),
    };
    for operation in &content.operations {
        writer.operation(&operation.operator, &operation.operands);
    }
    Ok(writer.out)
}

/// Removes page numbers and running headers and footers: they repeat on every page and
/// would make every chunk of a manual look alike. A page's first or last paragraph goes
/// when it is only a page number ("7", "- 7 -", "iv", "Page 7 of 9"), or when, with its
/// digits left out, it is the first or last paragraph of at least half the pages (and of
/// three or more).
fn drop_page_furniture(pages: &mut [Vec<String>]) {
    fn key(paragraph: &str) -> String {
        paragraph
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for page in pages.iter() {
        let mut edges: Vec<String> = page
            .first()
            .into_iter()
            .chain(page.last())
            .map(|p| key(p))
            .collect();
        edges.dedup();
        for edge in edges {
            *counts.entry(edge).or_default() += 1;
        }
    }
    let page_count = pages.len();
    let repeated = |paragraph: &str| {
        let count = counts.get(&key(paragraph)).copied().unwrap_or(0);
        count >= 3 && count * 2 >= page_count
    };
    let furniture = |paragraph: &str| is_page_number(paragraph) || repeated(paragraph);
    for page in pages.iter_mut() {
        if page.last().is_some_and(|p| furniture(p)) {
            page.pop();
        }
        if page.first().is_some_and(|p| furniture(p)) {
            page.remove(0);
        }
    }
}

/// "7", "- 7 -", "vii", "Page 7", "Page 7 of 9", "7 / 9".
fn is_page_number(paragraph: &str) -> bool {
    let lower = paragraph.trim().to_lowercase();
    let rest = lower.strip_prefix("page").unwrap_or(&lower);
    let words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '–' | '/' | '|'))
        .filter(|w| !w.is_empty() && *w != "of")
        .collect();
    !words.is_empty()
        && words.len() <= 2
        && words.iter().all(|w| {
            w.chars().all(|c| c.is_ascii_digit())
                || (w.len() <= 6 && w.chars().all(|c| matches!(c, 'i' | 'v' | 'x' | 'l')))
        })
}

/// Splits page text at blank lines and joins each paragraph's lines: a line ending in a
/// hyphen after a letter, followed by a lowercase letter, was one word.
fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|paragraph| {
            let mut joined = String::new();
            for line in paragraph.lines().map(super::collapse_whitespace) {
                if line.is_empty() {
                    continue;
                }
                let hyphenated = joined.ends_with('-')
                    && joined.chars().rev().nth(1).is_some_and(char::is_alphabetic)
                    && line.starts_with(char::is_lowercase);
                if hyphenated {
                    joined.pop();
                } else if !joined.is_empty() {
                    joined.push(' ');
                }
                joined.push_str(&line);
            }
            (!joined.is_empty()).then_some(joined)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::extract::{Format, extract as extract_any, sniff};
    use e2e::pdf::PdfBuilder;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn a_two_page_pdf_yields_both_pages_text_in_order() {
        let pdf = PdfBuilder::new()
            .title("Returns policy")
            .page(&[
                "Page one says hello.",
                "It has two lines.",
                "",
                "And a second para-",
                "graph here.",
            ])
            .page(&["Page two says goodbye."])
            .build();
        assert_eq!(sniff(&pdf, None), Ok(Format::Pdf));
        let doc = extract_any(&pdf, Format::Pdf, &limits());
        assert_eq!(
            doc,
            Ok(Extracted {
                title: Some("Returns policy".into()),
                blocks: vec![
                    Block::Page(1),
                    Block::Paragraph("Page one says hello. It has two lines.".into()),
                    Block::Paragraph("And a second paragraph here.".into()),
                    Block::Page(2),
                    Block::Paragraph("Page two says goodbye.".into()),
                ],
                pages: Some(2),
            })
        );
    }

    #[test]
    fn page_numbers_and_running_headers_are_dropped() {
        let mut builder = PdfBuilder::new();
        for page in 1..=4 {
            let number = page.to_string();
            let body = format!("Body text of page {page}.");
            builder = builder.page(&["ACME handbook, chapter 2", "", &body, "", &number]);
        }
        let doc = extract_any(&builder.build(), Format::Pdf, &limits()).map(|d| d.blocks);
        let expected: Vec<Block> = (1..=4)
            .flat_map(|page| {
                [
                    Block::Page(page),
                    Block::Paragraph(format!("Body text of page {page}.")),
                ]
            })
            .collect();
        assert_eq!(doc, Ok(expected));
        for number in ["7", "- 7 -", "iv", "Page 7 of 9", "7 / 9"] {
            assert!(is_page_number(number), "{number}");
        }
        for text in ["7 days", "Version 2.1", "mix", "Page seven"] {
            assert!(!is_page_number(text), "{text}");
        }
    }

    #[test]
    fn words_placed_one_by_one_and_kerned_gaps_get_spaces() {
        // Word-by-word positioning and TJ gaps, as typesetting tools write them.
        let content = "BT /F1 12 Tf 72 720 Td (Refunds) Tj 60 0 Td (take ) Tj \
                       [(fourteen) -250 (days) 20 (.)] TJ ET";
        let pdf = PdfBuilder::new().raw_page(content).build();
        let doc = extract_any(&pdf, Format::Pdf, &limits()).map(|d| d.blocks);
        assert_eq!(
            doc,
            Ok(vec![
                Block::Page(1),
                Block::Paragraph("Refunds take fourteen days.".into())
            ])
        );
    }

    #[test]
    fn a_flipped_coordinate_system_still_reads_top_to_bottom() {
        // Some generators flip the y axis once and then move down with positive steps.
        let content = "1 0 0 -1 0 792 cm BT /F1 12 Tf 1 0 0 -1 72 72 Tm (First line) Tj \
                       0 -14 Td (second line) Tj 0 -40 Td (New paragraph) Tj ET";
        let pdf = PdfBuilder::new().raw_page(content).build();
        let doc = extract_any(&pdf, Format::Pdf, &limits()).map(|d| d.blocks);
        assert_eq!(
            doc,
            Ok(vec![
                Block::Page(1),
                Block::Paragraph("First line second line".into()),
                Block::Paragraph("New paragraph".into()),
            ])
        );
    }

    #[test]
    fn a_pdf_without_text_is_reported_as_having_no_text_layer() {
        let scanned = PdfBuilder::new()
            .raw_page("0.5 g 72 72 400 600 re f")
            .raw_page("")
            .build();
        assert_eq!(
            extract_any(&scanned, Format::Pdf, &limits()),
            Err(ExtractError::PdfNoText)
        );
    }

    #[test]
    fn too_many_pages_are_refused() {
        let pdf = PdfBuilder::new()
            .page(&["a"])
            .page(&["b"])
            .page(&["c"])
            .build();
        let limits = Limits {
            max_pages: 2,
            ..Limits::default()
        };
        assert_eq!(
            extract_any(&pdf, Format::Pdf, &limits),
            Err(ExtractError::TooManyPages { limit: 2 })
        );
    }

    fn encrypted(pdf: &[u8], user_password: &str) -> Vec<u8> {
        let mut doc = Document::load_mem(pdf).unwrap();
        let version = lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner-secret",
            user_password,
            key_length: 128,
            permissions: lopdf::Permissions::default(),
        };
        let state = lopdf::EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_password_protected_pdf_is_refused_and_a_restrictions_only_one_is_read() {
        let pdf = PdfBuilder::new()
            .page(&["Confidential price list."])
            .build();
        let locked = encrypted(&pdf, "open-sesame");
        assert_eq!(sniff(&locked, None), Ok(Format::Pdf));
        assert_eq!(
            extract_any(&locked, Format::Pdf, &limits()),
            Err(ExtractError::PdfEncrypted)
        );
        let restricted = encrypted(&pdf, "");
        let doc = extract_any(&restricted, Format::Pdf, &limits()).map(|d| d.blocks);
        assert_eq!(
            doc,
            Ok(vec![
                Block::Page(1),
                Block::Paragraph("Confidential price list.".into())
            ])
        );
    }

    #[test]
    fn a_damaged_pdf_is_an_error_in_our_words() {
        let pdf = PdfBuilder::new().page(&["Some text on the page."]).build();
        let truncated = &pdf[..pdf.len() / 3];
        let err = extract_any(truncated, Format::Pdf, &limits());
        match err {
            Err(ExtractError::Pdf(why)) => assert!(!why.contains("Some text")),
            // Lenient parsing may recover the page from a truncated file; then it has text.
            Ok(_) | Err(ExtractError::PdfNoText) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            extract_any(b"%PDF-1.7\nnot really", Format::Pdf, &limits()),
            Err(ExtractError::Pdf(DAMAGED.into()))
        );
    }

    #[test]
    fn mutated_pdfs_never_panic() {
        let pdf = PdfBuilder::new()
            .title("T")
            .page(&["Alpha beta gamma.", "", "Delta."])
            .page(&["Epsilon."])
            .build();
        let mut rng = crate::knowledge::extract::tests::Rng::new(42);
        for _ in 0..300 {
            let mut bytes = pdf.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at.max(8)),
                }
            }
            let _ = extract_any(&bytes, Format::Pdf, &limits());
        }
    }
}
