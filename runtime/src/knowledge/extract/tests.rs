//! Tests of extraction, kept beside the module so it stays readable.

use super::*;
use e2e::pdf::PdfBuilder;

#[test]
fn a_pdf_named_txt_is_sniffed_as_pdf_whatever_the_declared_type() {
    let pdf = PdfBuilder::new().page(&["Hello"]).build();
    assert_eq!(sniff(&pdf, Some("text/plain")), Ok(Format::Pdf));
    assert_eq!(sniff(&pdf, None), Ok(Format::Pdf));
}

#[test]
fn binary_formats_are_unsupported_even_when_declared_as_text() {
    let png = b"\x89PNG\r\n\x1A\n\x00\x00\x00\rIHDR\x00\x00\x00\x01";
    assert_eq!(
        sniff(png, Some("text/markdown")),
        Err(ExtractError::Unsupported)
    );
    let docx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00word/document.xml";
    assert_eq!(sniff(docx, None), Err(ExtractError::Unsupported));
    assert_eq!(
        sniff(b"\xFF\xD8\xFF\xE0\x00\x10JFIF", None),
        Err(ExtractError::Unsupported)
    );
    assert_eq!(
        sniff(b"GIF89a\x01\x00\x01\x00", None),
        Err(ExtractError::Unsupported)
    );
    assert_eq!(
        sniff(b"\x1F\x8B\x08\x00\x00\x00", None),
        Err(ExtractError::Unsupported)
    );
    assert_eq!(
        sniff(b"\x7FELF\x02\x01\x01", None),
        Err(ExtractError::Unsupported)
    );
    assert_eq!(
        sniff(b"some text\x00with a NUL", None),
        Err(ExtractError::Unsupported)
    );
    assert_eq!(
        sniff(b"<?xml version=\"1.0\"?><svg></svg>", None),
        Err(ExtractError::Unsupported)
    );
}

#[test]
fn words_that_begin_like_a_signature_are_still_text() {
    assert_eq!(sniff(b"MZ is a region code.", None), Ok(Format::Text));
    assert_eq!(sniff(b"BZh: a note", None), Ok(Format::Text));
}

#[test]
fn html_is_recognised_by_its_doctype_or_its_tags() {
    let page = b"\n<!DOCTYPE html>\n<html><body><p>Hi</p></body></html>";
    assert_eq!(sniff(page, Some("text/plain")), Ok(Format::Html));
    let fragment = b"<p>Opening hours</p>\n<ul><li>Mon</li><li>Tue</li></ul>";
    assert_eq!(sniff(fragment, None), Ok(Format::Html));
    let commented = b"<!-- saved page -->\n<html lang=\"en\"><p>x</p></html>";
    assert_eq!(sniff(commented, None), Ok(Format::Html));
}

#[test]
fn a_readme_that_opens_with_a_centred_logo_is_markdown() {
    let readme = "<p align=\"center\"><img src=\"logo.png\"></p>\n\n# Project\n\n\
                  Some text with a [link](https://example.com).\n\n## Install\n\n\
                  ```sh\nmake\n```\n\n## Usage\n\nRun it.\n";
    assert_eq!(sniff(readme.as_bytes(), None), Ok(Format::Markdown));
}

#[test]
fn markdown_is_told_from_plain_text_by_its_signals() {
    let markdown =
        "# Refunds\n\nWe refund within 14 days.\n\n| Plan | Days |\n|---|---|\n| Pro | 30 |\n";
    assert_eq!(
        sniff(markdown.as_bytes(), Some("text/plain")),
        Ok(Format::Markdown)
    );
    let text = "Dear customer,\n\nthank you for your order. It ships tomorrow.\n\nRegards\n";
    assert_eq!(
        sniff(text.as_bytes(), Some("text/markdown")),
        Ok(Format::Text)
    );
    assert_eq!(sniff(text.as_bytes(), None), Ok(Format::Text));
}

#[test]
fn the_declared_type_breaks_a_tie_between_markdown_and_text() {
    // One bullet is not enough to tell.
    let ambiguous = "Bring:\n\n- a towel\n\nThat's all.\n";
    assert_eq!(
        sniff(ambiguous.as_bytes(), Some("text/markdown; charset=utf-8")),
        Ok(Format::Markdown)
    );
    assert_eq!(
        sniff(ambiguous.as_bytes(), Some("text/plain")),
        Ok(Format::Text)
    );
    assert_eq!(sniff(ambiguous.as_bytes(), None), Ok(Format::Text));
}

#[test]
fn empty_and_whitespace_documents_are_empty() {
    assert_eq!(sniff(b"", None), Err(ExtractError::Empty));
    assert_eq!(
        sniff(b" \n\t\r\n", Some("text/plain")),
        Err(ExtractError::Empty)
    );
    assert_eq!(sniff(b"\xEF\xBB\xBF  ", None), Err(ExtractError::Empty));
    assert_eq!(
        extract(b"", Format::Text, &Limits::default()),
        Err(ExtractError::Empty)
    );
    assert_eq!(
        extract(
            b"<html><script>x()</script></html>",
            Format::Html,
            &Limits::default()
        ),
        Err(ExtractError::Empty)
    );
}

#[test]
fn legacy_encodings_are_reported_as_not_utf8_and_utf16_with_a_bom_is_read() {
    let latin1 = b"Caf\xE9 cr\xE8me, \xE0 emporter.\n";
    assert_eq!(sniff(latin1, None), Err(ExtractError::NotUtf8));
    assert_eq!(
        extract(latin1, Format::Text, &Limits::default()),
        Err(ExtractError::NotUtf8)
    );
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "# Café\n\nCrème brûlée.\n\n- one\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    assert_eq!(sniff(&utf16, None), Ok(Format::Markdown));
    let doc = extract(&utf16, Format::Markdown, &Limits::default()).map(|d| d.blocks);
    assert_eq!(
        doc,
        Ok(vec![
            Block::Heading {
                level: 1,
                text: "Café".into()
            },
            Block::Paragraph("Crème brûlée.".into()),
            Block::ListItem("one".into()),
        ])
    );
}

#[test]
fn an_upload_over_the_limit_is_refused_before_any_parsing() {
    let limits = Limits {
        max_bytes: 10,
        max_pages: 5,
    };
    let err = extract(b"01234567890", Format::Text, &limits);
    assert_eq!(err, Err(ExtractError::TooLarge { limit: 10 }));
    let limit = ExtractError::TooLarge {
        limit: 20 * 1024 * 1024,
    };
    assert_eq!(
        limit.to_string(),
        "the document is larger than the limit of 20 MiB"
    );
}

#[test]
fn plain_text_paragraphs_are_split_at_blank_lines() {
    let text = b"First line\r\nsecond line\r\n\r\n\r\nNext paragraph.\n";
    let doc = extract(text, Format::Text, &Limits::default());
    assert_eq!(
        doc.map(|d| d.blocks),
        Ok(vec![
            Block::Paragraph("First line\nsecond line".into()),
            Block::Paragraph("Next paragraph.".into()),
        ])
    );
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_never_panic_in_any_extractor() {
    let mut rng = Rng::new(0x5eed);
    let limits = Limits::default();
    let alphabet: &[u8] = b"<>/=\"' abc#|-*`[]()!\n\t&;%PDF-1.";
    for round in 0..600 {
        let len = rng.below(2048);
        let bytes = if round % 2 == 0 {
            rng.bytes(len)
        } else {
            // Markup-heavy noise reaches deeper into the parsers than uniform bytes.
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        };
        let _ = sniff(&bytes, None);
        for format in [Format::Markdown, Format::Text, Format::Html, Format::Pdf] {
            let _ = extract(&bytes, format, &limits);
        }
    }
}
